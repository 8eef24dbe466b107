import Formats
/// Checkpoint (+ vision folder + tokenizer) to one GGUF model file.
public enum ConversionModule {}
