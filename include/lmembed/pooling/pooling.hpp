// lmembed/pooling/pooling.hpp - every pooling: policy tags, eos/mean, latent and multi_layer heads.
#pragma once

#include "lmembed/pooling/any_head.hpp"
#include "lmembed/pooling/latent.hpp"
#include "lmembed/pooling/multi_layer.hpp"
#include "lmembed/pooling/policy.hpp"
#include "lmembed/pooling/simple.hpp"
