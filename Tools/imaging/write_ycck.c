/* Writes a YCCK JPEG (Adobe APP14 transform 2) from raw CMYK samples, which Pillow cannot do.
 * The samples are written as given; Pillow's own CMYK JPEGs store them inverted (Adobe
 * convention), so the generator passes 255 - CMYK to get the same picture.
 * Build: cc -O2 -o write_ycck write_ycck.c -ljpeg
 * Use:   write_ycck WIDTH HEIGHT QUALITY < raw.cmyk > out.jpg
 */
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: write_ycck WIDTH HEIGHT QUALITY < raw.cmyk > out.jpg\n"); return 2; }
    int width = atoi(argv[1]), height = atoi(argv[2]), quality = atoi(argv[3]);
    size_t size = (size_t)width * height * 4;
    unsigned char *pixels = malloc(size);
    if (!pixels || fread(pixels, 1, size, stdin) != size) { fprintf(stderr, "short input\n"); return 1; }
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, stdout);
    cinfo.image_width = width;
    cinfo.image_height = height;
    cinfo.input_components = 4;
    cinfo.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&cinfo);
    jpeg_set_colorspace(&cinfo, JCS_YCCK);  /* also turns on the Adobe marker */
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = pixels + (size_t)cinfo.next_scanline * width * 4;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(pixels);
    return 0;
}
