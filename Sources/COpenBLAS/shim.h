// openblas-pthread's cblas.h; it also declares openblas_set_num_threads and openblas_get_corename.
#include <cblas.h>
