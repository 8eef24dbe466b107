import Formats
import Kernels
/// The MiniMind-V networks: vision encoders, projectors, the decoder.
public enum ModelModule {}
