// Detection ('detection' model type, detection.cpp): box geometry shared by the adapter and its tests, and
// the model creation behind create_dl_model_detection.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"

namespace opendl {

// HALCON's rectangle1: (row1, col1, row2, col2), the continuous rectangle [row1, row2] x [col1, col2].
struct Box1 {
  double r1, c1, r2, c2;
};

double box_iou(const Box1& a, const Box1& b);
// The anchors of one pyramid level (order: map row, map column, subscale, aspect ratio).
std::vector<Box1> level_anchors(int64_t level, int64_t map_h, int64_t map_w, int64_t image_h, int64_t image_w,
                                int64_t num_subscales, const std::vector<double>& ratios);
void encode_box(const Box1& anchor, const Box1& box, float out[4]);
Box1 decode_box(const Box1& anchor, const float d[4]);
// Greedy non-maximum suppression: indices of the kept boxes by descending score (ties: lower index first);
// a box is dropped when its IoU with a kept, higher-scored box exceeds max_overlap.
std::vector<size_t> nms(const std::vector<Box1>& boxes, const std::vector<double>& scores, double max_overlap);

// create_dl_model_detection: `read` reads the backbone (a built-in name or a model file).
std::shared_ptr<Model> create_detection_model(const std::string& backbone, int64_t num_classes,
                                              const std::map<std::string, Tuple>& param,
                                              const std::function<std::shared_ptr<Model>(const std::string&)>& read);
std::unique_ptr<ModelAdapter> make_empty_detection_adapter();

}  // namespace opendl
