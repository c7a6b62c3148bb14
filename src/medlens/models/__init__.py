"""Models: the registry (data) and backends behind two small Protocols.

Heavy imports (torch, transformers, llama_cpp) happen only inside backend modules.
"""
