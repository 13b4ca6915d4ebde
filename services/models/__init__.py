"""Policy model zoo and tokenizer: tiny policies created locally, loadable by transformers and vLLM."""
