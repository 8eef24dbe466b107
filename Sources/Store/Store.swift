import GRDB
/// The results database and the vision-embedding cache.
public enum StoreModule {}
