// opendl: an open deep-learning training engine with HALCON's operators. Include this one header.
#pragma once

#include "opendl/dict.h"
#include "opendl/error.h"
#include "opendl/model.h"
#include "opendl/operators.h"
#include "opendl/tensor.h"
#include "opendl/tuple.h"

#define OPENDL_VERSION_MAJOR 0
#define OPENDL_VERSION_MINOR 1
#define OPENDL_VERSION_PATCH 0
