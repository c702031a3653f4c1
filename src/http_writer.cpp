#include "http_writer.h"
