"""Using a trained adapter: GGUF for llama.cpp and Ollama, vLLM's folder and command, and `ask`."""
