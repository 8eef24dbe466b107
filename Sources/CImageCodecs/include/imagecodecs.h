#pragma once
#include <stddef.h>
#include <stdint.h>

/// Outcome of a decode. libjpeg and libpng report failures by longjmp, which Swift cannot
/// catch, so every call into them happens in imagecodecs.c behind setjmp and comes back as
/// one of these codes plus a message.
typedef enum {
    IC_OK = 0,
    IC_ERR_CORRUPT = 1,      ///< the library refused the data
    IC_ERR_TRUNCATED = 2,    ///< the data ended before the image did
    IC_ERR_TOO_LARGE = 3,    ///< width x height above the caller's limit (checked before allocating)
    IC_ERR_UNSUPPORTED = 4,  ///< a valid file of a kind we do not convert (e.g. 2-channel JPEG)
    IC_ERR_NO_MEMORY = 5,
} ic_status;

/// What a decode returns: RGB interleaved, 3 bytes per pixel, rows packed.
/// `pixels` is malloc'd by the decoder and released with ic_free.
typedef struct {
    uint32_t width;
    uint32_t height;
    uint8_t *pixels;
    /// JPEG: 1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK; PNG: the PNG colour type. Informational.
    int32_t source_components;
    /// PNG bit depth / JPEG data precision. Informational.
    int32_t source_bit_depth;
} ic_image;

/// Decodes a JPEG to RGB the way Pillow's `Image.open(...).convert("RGB")` does: accurate
/// integer DCT and fancy upsampling (libjpeg's defaults), grayscale replicated,
/// CMYK/YCCK read as Adobe-inverted CMYK and converted with Pillow's formula.
/// A file that ends early is an error (IC_ERR_TRUNCATED), as it is for Pillow by default.
ic_status ic_jpeg_decode(const uint8_t *data, size_t length, uint64_t max_pixels,
                         ic_image *out, char *message, size_t message_length);

/// Decodes a PNG to RGB as Pillow's `convert("RGB")` does: alpha dropped, palette looked up,
/// 16-bit colour reduced to its high byte, 16-bit grayscale clipped to 255 (Pillow's I;16 -> RGB).
ic_status ic_png_decode(const uint8_t *data, size_t length, uint64_t max_pixels,
                        ic_image *out, char *message, size_t message_length);

/// Releases the pixels of an ic_image (safe on NULL).
void ic_free(uint8_t *pixels);
