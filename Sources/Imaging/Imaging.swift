import CImageCodecs
/// Image decoding and Pillow-exact preprocessing.
public enum ImagingModule {}
