import Engine
import Spool
import Store
import CSystemd
/// The daemon loop.
public enum ServiceModule {}
