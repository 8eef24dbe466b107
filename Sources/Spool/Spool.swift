/// The spool directory protocol.
public enum SpoolModule {}
