"""Fine-tuning (`medlens finetune`): LoRA/QLoRA SFT of MedGemma, MedSigLIP heads and probes.

Never imported by the server or by `import medlens` (tests/test_architecture.py): the
training stack (peft, trl, datasets) is the `train` extra and only the CLI reaches it.
"""
