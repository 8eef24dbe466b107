/// Byte-level BPE tokenizer and chat templates.
public enum TokenizerModule {}
