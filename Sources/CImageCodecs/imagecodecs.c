#include "imagecodecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

void ic_free(uint8_t *pixels) { free(pixels); }

static void ic_set_message(char *message, size_t message_length, const char *text) {
    if (message != NULL && message_length > 0) snprintf(message, message_length, "%s", text);
}

/// width * height * 3 as a size_t, or 0 when it does not fit (so the caller refuses it).
static size_t ic_rgb_bytes(uint64_t width, uint64_t height) {
    if (width == 0 || height == 0) return 0;
    uint64_t pixels = width * height;
    if (pixels / width != height || pixels > (uint64_t)SIZE_MAX / 3) return 0;
    return (size_t)(pixels * 3);
}

// MARK: - JPEG

struct ic_jpeg_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    ic_status status;
    char text[JMSG_LENGTH_MAX];
};

static void ic_jpeg_error_exit(j_common_ptr cinfo) {
    struct ic_jpeg_error *error = (struct ic_jpeg_error *)cinfo->err;
    cinfo->err->format_message(cinfo, error->text);
    switch (cinfo->err->msg_code) {
    case JERR_BAD_PRECISION:
    case JERR_CONVERSION_NOTIMPL:
    case JERR_NOT_COMPILED:
    case JERR_NOTIMPL:
        error->status = IC_ERR_UNSUPPORTED;
        break;
    case JERR_OUT_OF_MEMORY:
        error->status = IC_ERR_NO_MEMORY;
        break;
    default:
        error->status = IC_ERR_CORRUPT;
    }
    longjmp(error->jump, 1);
}

/// Warnings (level < 0) are ignored as Pillow ignores them ("Corrupt JPEG data: N extraneous
/// bytes" still decodes there), except running out of data: Pillow refuses a truncated file
/// ("image file is truncated") unless LOAD_TRUNCATED_IMAGES is set, and libjpeg would otherwise
/// fill the rest of the picture with grey.
static void ic_jpeg_emit_message(j_common_ptr cinfo, int level) {
    struct ic_jpeg_error *error = (struct ic_jpeg_error *)cinfo->err;
    if (level >= 0) return;
    cinfo->err->num_warnings++;
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
        cinfo->err->format_message(cinfo, error->text);
        error->status = IC_ERR_TRUNCATED;
        longjmp(error->jump, 1);
    }
}

static void ic_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

/// Pillow's CMYK -> RGB (Convert.c cmyk2rgb) on Adobe-inverted samples ("CMYK;I").
static void ic_cmyk_inverted_to_rgb(uint8_t *out, const uint8_t *in, size_t count) {
    for (size_t x = 0; x < count; x++) {
        int c = 255 - in[0], m = 255 - in[1], y = 255 - in[2], k = 255 - in[3];
        int nk = 255 - k;
        int t;
        t = c * nk + 128; int r = nk - (((t >> 8) + t) >> 8);
        t = m * nk + 128; int g = nk - (((t >> 8) + t) >> 8);
        t = y * nk + 128; int b = nk - (((t >> 8) + t) >> 8);
        out[0] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
        out[1] = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
        out[2] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
        out += 3;
        in += 4;
    }
}

ic_status ic_jpeg_decode(const uint8_t *data, size_t length, uint64_t max_pixels,
                         ic_image *out, char *message, size_t message_length) {
    struct jpeg_decompress_struct cinfo;
    struct ic_jpeg_error error;
    uint8_t *volatile rgb = NULL;
    uint8_t *volatile scanline = NULL;

    memset(out, 0, sizeof *out);
    memset(&error, 0, sizeof error);
    cinfo.err = jpeg_std_error(&error.pub);
    error.pub.error_exit = ic_jpeg_error_exit;
    error.pub.emit_message = ic_jpeg_emit_message;
    error.pub.output_message = ic_jpeg_output_message;

    if (setjmp(error.jump)) {
        ic_set_message(message, message_length, error.text);
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        free(scanline);
        return error.status;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)length);
    jpeg_read_header(&cinfo, TRUE);

    out->source_components = cinfo.num_components;
    out->source_bit_depth = cinfo.data_precision;
    uint64_t width = cinfo.image_width, height = cinfo.image_height;
    out->width = (uint32_t)width;   // reported with IC_ERR_TOO_LARGE; reset below otherwise
    out->height = (uint32_t)height;
    if (width * height > max_pixels) {
        snprintf(message, message_length, "%llu x %llu pixels", (unsigned long long)width,
                 (unsigned long long)height);
        jpeg_destroy_decompress(&cinfo);
        return IC_ERR_TOO_LARGE;
    }
    out->width = out->height = 0;
    size_t rgb_bytes = ic_rgb_bytes(width, height);
    if (rgb_bytes == 0) {
        ic_set_message(message, message_length, "the header gives an empty image");
        jpeg_destroy_decompress(&cinfo);
        return IC_ERR_CORRUPT;
    }

    // The same choice as Pillow's JpegImagePlugin: the mode follows the number of components.
    switch (cinfo.num_components) {
    case 1: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case 3: cinfo.out_color_space = JCS_RGB; break;
    case 4: cinfo.out_color_space = JCS_CMYK; break;  // libjpeg turns YCCK into CMYK
    default:
        snprintf(message, message_length, "a JPEG with %d colour components", cinfo.num_components);
        jpeg_destroy_decompress(&cinfo);
        return IC_ERR_UNSUPPORTED;
    }

    jpeg_start_decompress(&cinfo);
    int components = cinfo.output_components;
    rgb = malloc(rgb_bytes);
    if (components != 3) scanline = malloc((size_t)width * (size_t)components);
    if (rgb == NULL || (components != 3 && scanline == NULL)) {
        ic_set_message(message, message_length, "out of memory for the decoded pixels");
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        free(scanline);
        return IC_ERR_NO_MEMORY;
    }
    size_t stride = (size_t)width * 3;
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *row = rgb + stride * cinfo.output_scanline;
        JSAMPROW target = components == 3 ? row : scanline;
        if (jpeg_read_scanlines(&cinfo, &target, 1) != 1) {
            // Only a suspending source returns 0; the memory source never suspends.
            ic_set_message(message, message_length, "the decoder stopped early");
            jpeg_destroy_decompress(&cinfo);
            free(rgb);
            free(scanline);
            return IC_ERR_TRUNCATED;
        }
        if (components == 1) {
            for (size_t x = 0; x < (size_t)width; x++) row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = scanline[x];
        } else if (components == 4) {
            ic_cmyk_inverted_to_rgb(row, scanline, (size_t)width);
        }
    }
    // No jpeg_finish_decompress: like Pillow, once every scanline is out the trailer does not matter.
    jpeg_destroy_decompress(&cinfo);
    free(scanline);
    out->width = (uint32_t)width;
    out->height = (uint32_t)height;
    out->pixels = rgb;
    return IC_OK;
}

// MARK: - PNG

struct ic_png_state {
    jmp_buf jump;
    ic_status status;
    char text[256];
    const uint8_t *data;
    size_t length;
    size_t offset;
};

static void ic_png_error(png_structp png, png_const_charp text) {
    struct ic_png_state *state = png_get_error_ptr(png);
    if (state->status == IC_OK) state->status = IC_ERR_CORRUPT;
    snprintf(state->text, sizeof state->text, "%s", text);
    longjmp(state->jump, 1);
}

static void ic_png_warning(png_structp png, png_const_charp text) { (void)png; (void)text; }

static void ic_png_read(png_structp png, png_bytep target, size_t count) {
    struct ic_png_state *state = png_get_io_ptr(png);
    if (count > state->length - state->offset) {
        state->status = IC_ERR_TRUNCATED;
        png_error(png, "the file ends before the image data does");
    }
    memcpy(target, state->data + state->offset, count);
    state->offset += count;
}

ic_status ic_png_decode(const uint8_t *data, size_t length, uint64_t max_pixels,
                        ic_image *out, char *message, size_t message_length) {
    struct ic_png_state state;
    memset(out, 0, sizeof *out);
    memset(&state, 0, sizeof state);
    state.data = data;
    state.length = length;

    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, ic_png_error, ic_png_warning);
    if (png == NULL) {
        ic_set_message(message, message_length, "out of memory");
        return IC_ERR_NO_MEMORY;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        ic_set_message(message, message_length, "out of memory");
        return IC_ERR_NO_MEMORY;
    }
    uint8_t *volatile decoded = NULL;
    png_bytep *volatile rows = NULL;
    uint8_t *volatile rgb = NULL;

    if (setjmp(state.jump)) {
        ic_set_message(message, message_length, state.text);
        png_destroy_read_struct(&png, &info, NULL);
        free(decoded);
        free(rows);
        free(rgb);
        return state.status;
    }
    png_set_read_fn(png, &state, ic_png_read);
    // The size check is ours (below, against the caller's limit), not libpng's 1e6 default.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);

    uint64_t width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    int color_type = png_get_color_type(png, info);
    out->source_components = color_type;
    out->source_bit_depth = bit_depth;
    out->width = (uint32_t)width;   // reported with IC_ERR_TOO_LARGE; reset below otherwise
    out->height = (uint32_t)height;
    if (width * height > max_pixels) {
        snprintf(message, message_length, "%llu x %llu pixels", (unsigned long long)width,
                 (unsigned long long)height);
        png_destroy_read_struct(&png, &info, NULL);
        return IC_ERR_TOO_LARGE;
    }
    out->width = out->height = 0;
    size_t rgb_bytes = ic_rgb_bytes(width, height);
    if (rgb_bytes == 0) {
        ic_set_message(message, message_length, "the header gives an empty image");
        png_destroy_read_struct(&png, &info, NULL);
        return IC_ERR_CORRUPT;
    }

    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    // Pillow keeps the high byte of 16-bit colour and grey+alpha ("RGB;16B", "LA;16B"), but
    // opens 16-bit grey as I;16, whose conversion to RGB clips at 255: that case stays 16-bit here.
    if (bit_depth == 16 && color_type != PNG_COLOR_TYPE_GRAY) png_set_strip_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    int depth = png_get_bit_depth(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if (channels < 1 || channels > 4 || (depth != 8 && depth != 16) || (depth == 16 && channels != 1)) {
        snprintf(message, message_length, "unexpected PNG layout: %d channels of %d bits", channels, depth);
        png_destroy_read_struct(&png, &info, NULL);
        return IC_ERR_UNSUPPORTED;
    }
    decoded = malloc(row_bytes * (size_t)height);
    rows = malloc(sizeof(png_bytep) * (size_t)height);
    rgb = malloc(rgb_bytes);
    if (decoded == NULL || rows == NULL || rgb == NULL) {
        ic_set_message(message, message_length, "out of memory for the decoded pixels");
        png_destroy_read_struct(&png, &info, NULL);
        free(decoded);
        free(rows);
        free(rgb);
        return IC_ERR_NO_MEMORY;
    }
    for (size_t y = 0; y < (size_t)height; y++) rows[y] = decoded + y * row_bytes;
    png_read_image(png, rows);
    // No png_read_end: chunks after the image data (or a missing IEND) do not change the pixels.
    png_destroy_read_struct(&png, &info, NULL);

    for (size_t y = 0; y < (size_t)height; y++) {
        const uint8_t *in = decoded + y * row_bytes;
        uint8_t *o = rgb + y * (size_t)width * 3;
        for (size_t x = 0; x < (size_t)width; x++, o += 3) {
            if (depth == 16) {
                unsigned v = ((unsigned)in[2 * x] << 8) | in[2 * x + 1];
                o[0] = o[1] = o[2] = (uint8_t)(v > 255 ? 255 : v);
            } else if (channels <= 2) {
                o[0] = o[1] = o[2] = in[channels * x];
            } else {
                o[0] = in[channels * x];
                o[1] = in[channels * x + 1];
                o[2] = in[channels * x + 2];
            }
        }
    }
    free(decoded);
    free(rows);
    out->width = (uint32_t)width;
    out->height = (uint32_t)height;
    out->pixels = rgb;
    return IC_OK;
}
