import Model
/// Sequences, KV caches, batched steps, sampling, generation.
public enum EngineModule {}
