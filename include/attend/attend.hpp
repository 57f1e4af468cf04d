/// @file
/// @brief attend: scaled dot-product attention over Eigen tensors, with PyTorch's semantics.
///
/// The umbrella header: it only includes the public headers. Start with attend::Attend (the module
/// and its calls), attend::CallOptions (per-call arguments), attend::Mask, attend::FlashAttentionConfig,
/// attend::TensorView, attend::Workspace and attend::Error; the main page has an overview.
#ifndef ATTEND_ATTEND_HPP
#define ATTEND_ATTEND_HPP

// Version and errors
#include "attend/version.hpp"
#include "attend/error.hpp"

// Types and views
#include "attend/types.hpp"
#include "attend/tensor.hpp"
#include "attend/mask.hpp"

// Configuration, per-call options, scratch and gradients
#include "attend/config.hpp"
#include "attend/call_options.hpp"
#include "attend/workspace.hpp"
#include "attend/gradients.hpp"

// The module
#include "attend/module.hpp"

#endif  // ATTEND_ATTEND_HPP
