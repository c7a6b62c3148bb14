"""Scripts of the scripted test generator (`medlens/test-scripted`): fixed text per prompt kind."""
