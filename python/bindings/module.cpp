// opendl._core: the pybind11 module. Thin by design: Python <-> C++ conversion (tuples, numpy images,
// sample dicts) and mapping opendl::Error to opendl.HOperatorError. The GIL is released while the core
// trains or infers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cctype>
#include <map>
#include <cstring>

#include "backend/cuda_loader.h"
#include "backend/gpu_backend.h"
#include "models/detection.h"
#include "models/model.h"
#include "models/zoo.h"
#include "opendl/opendl.h"

namespace py = pybind11;
using namespace opendl;

namespace {

// A Python str as UTF-8. A str holding lone surrogates (a file name of another encoding read through
// os.listdir, '\ud800' from JSON) has no UTF-8 form: `code` names the parameter, not pybind11's cast error.
std::string utf8(const py::handle& o, int code, const char* what) {
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(o.ptr(), &n);
  if (!s) {
    PyErr_Clear();
    py::object shown = py::reinterpret_steal<py::object>(PyObject_Repr(o.ptr()));
    throw Error(code, "", std::string(what) + " " + (shown ? py::str(shown).cast<std::string>().substr(0, 80) : "") +
                              " is not valid Unicode text (it holds a lone surrogate, as a file name in another "
                              "encoding read through os.listdir does)");
  }
  return std::string(s, size_t(n));
}

// `pos`: the operator parameter the value belongs to (1-based); HALCON's codes name it (1302/1202 for the
// second parameter, 1303/1203 for the third, ...).
Value to_value(const py::handle& o, int pos = 2) {
  if (py::isinstance<py::str>(o)) return utf8(o, 1300 + pos, "the string");
  if (py::isinstance<py::bool_>(o)) return int64_t(o.cast<bool>() ? 1 : 0);
  if (PyLong_Check(o.ptr()) || (PyIndex_Check(o.ptr()) && !PyFloat_Check(o.ptr()))) {
    // HALCON's integers are 64-bit: a larger one is refused, not wrapped or left to a cast error.
    py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(o.ptr()));
    if (!i) throw py::error_already_set();
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
    if (overflow)
      throw Error(1300 + pos, "", "the integer " + py::str(i).cast<std::string>().substr(0, 40) +
                                             " does not fit in 64 bits");
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    return int64_t(v);
  }
  if (PyFloat_Check(o.ptr()) || py::hasattr(o, "__float__")) return o.cast<double>();
  throw Error(1200 + pos, "", std::string("cannot convert a Python ") + py::str(o.get_type().attr("__name__")).cast<std::string>() +
                                        " to a tuple element (int, float or str)");
}

// HALCON's tuple conversion: a scalar (also a str) is a 1-element tuple, a sequence becomes a tuple. A dict is
// one element (a dict handle in HALCON), never the tuple of its keys; it is refused as a tuple element.
Tuple to_tuple(const py::handle& o, int pos = 2) {
  Tuple t;
  if (o.is_none()) return t;
  if (py::isinstance<py::str>(o) || py::isinstance<py::dict>(o) || !py::hasattr(o, "__iter__")) {
    t.push_back(to_value(o, pos));
    return t;
  }
  if (py::isinstance<py::array>(o)) {
    py::array a = py::array::ensure(o);
    for (auto item : a.attr("ravel")().attr("tolist")()) t.push_back(to_value(item, pos));
    return t;
  }
  for (auto item : o) t.push_back(to_value(item, pos));
  return t;
}

py::object from_value(const Value& v) {
  if (is_int(v)) return py::int_(std::get<int64_t>(v));
  if (is_real(v)) return py::float_(std::get<double>(v));
  return py::str(std::get<std::string>(v));
}

py::list from_tuple(const Tuple& t) {
  py::list l;
  for (auto& v : t) l.append(from_value(v));
  return l;
}

bool dtype_of(const py::dtype& d, DType& out) {
  if (d.is(py::dtype::of<float>())) { out = DType::kFloat32; return true; }
  if (d.is(py::dtype::of<uint8_t>())) { out = DType::kUInt8; return true; }
  if (d.is(py::dtype::of<int8_t>())) { out = DType::kInt8; return true; }
  if (d.is(py::dtype::of<int16_t>())) { out = DType::kInt16; return true; }
  if (d.is(py::dtype::of<uint16_t>())) { out = DType::kUInt16; return true; }
  if (d.is(py::dtype::of<int32_t>())) { out = DType::kInt32; return true; }
  return false;
}

// numpy -> Tensor (copy). Images: (H, W) or (H, W, C) with HALCON's dtypes (spec 0).
Tensor to_tensor(const py::array& a0, const std::string& what) {
  py::array a = py::array::ensure(a0, py::array::c_style);
  DType dt;
  if (!dtype_of(a.dtype(), dt))
    throw Error(err::kInputWrongType, "",
                what + ": numpy dtype '" + py::str(a.dtype()).cast<std::string>() +
                    "' has no HALCON image type (use float32, uint8, int8, int16, uint16 or int32)");
  std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
  Tensor t(shape, dt);
  std::memcpy(t.raw(), a.data(), size_t(t.numel()) * dtype_size(dt));
  return t;
}

py::array to_numpy_any(const Tensor& t);
py::array to_numpy(const Tensor& t) { return to_numpy_any(t); }

// Any HALCON image type -> numpy (copy).
py::array to_numpy_any(const Tensor& t) {
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  py::dtype dt;
  switch (t.dtype()) {
    case DType::kFloat32: dt = py::dtype::of<float>(); break;
    case DType::kUInt8: dt = py::dtype::of<uint8_t>(); break;
    case DType::kInt8: dt = py::dtype::of<int8_t>(); break;
    case DType::kInt16: dt = py::dtype::of<int16_t>(); break;
    case DType::kUInt16: dt = py::dtype::of<uint16_t>(); break;
    case DType::kInt32: dt = py::dtype::of<int32_t>(); break;
  }
  py::array a(dt, shape);
  if (t.numel()) std::memcpy(a.mutable_data(), t.raw(), size_t(t.numel()) * dtype_size(t.dtype()));
  return a;
}

// Dict trees: {key (str | int): list (tuple of int, float, str, nested tree) | ndarray (image object)}.
DictKey to_key(const py::handle& k, int pos) {
  if (py::isinstance<py::str>(k)) return utf8(k, 1300 + pos, "the dict key");
  if (PyLong_Check(k.ptr()) && !py::isinstance<py::bool_>(k)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(k.ptr(), &overflow);
    if (overflow) throw Error(1300 + pos, "", "the dict key " + py::str(k).cast<std::string>().substr(0, 40) +
                                                  " does not fit in 64 bits");
    return int64_t(v);
  }
  throw Error(1200 + pos, "", "dict keys must be str or int, got " +
                                  py::str(k.get_type().attr("__name__")).cast<std::string>());
}

// `pos`: the operator parameter holding the dict, named by the codes of values that do not convert.
DictPtr tree_to_dict(const py::handle& o, int depth, int pos) {
  if (depth > 256) throw Error(2899, "", "the dict is nested more than 256 levels deep");
  if (!py::isinstance<py::dict>(o)) throw Error(err::kWrongType2, "", "a dict tree must be a Python dict");
  auto d = std::make_shared<Dict>();
  for (auto kv : py::reinterpret_borrow<py::dict>(o)) {
    DictKey key = to_key(kv.first, pos);
    py::handle v = kv.second;
    if (py::isinstance<py::array>(v)) {
      d->set(key, to_tensor(py::reinterpret_borrow<py::array>(v), "dict key " + key_repr(key)));
    } else if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
      DictTuple t;
      for (auto e : v) {
        if (py::isinstance<py::dict>(e)) t.emplace_back(tree_to_dict(e, depth + 1, pos));
        else
          std::visit([&](auto&& x) { t.emplace_back(x); }, to_value(e, pos));
      }
      d->set(key, std::move(t));
    } else {
      throw Error(err::kWrongType2, "", "dict key " + key_repr(key) + ": a value must be a list (tuple) or an ndarray");
    }
  }
  return d;
}

py::dict dict_to_tree(const Dict& d) {
  py::dict out;
  for (auto& [k, v] : d.items()) {
    py::object key = std::holds_alternative<int64_t>(k) ? py::object(py::int_(std::get<int64_t>(k)))
                                                        : py::object(py::str(std::get<std::string>(k)));
    if (auto* t = std::get_if<DictTuple>(&v)) {
      py::list l;
      for (auto& e : *t) {
        if (auto* i = std::get_if<int64_t>(&e)) l.append(py::int_(*i));
        else if (auto* r = std::get_if<double>(&e)) l.append(py::float_(*r));
        else if (auto* s = std::get_if<std::string>(&e)) l.append(py::str(*s));
        else l.append(dict_to_tree(*std::get<DictPtr>(e)));
      }
      out[key] = l;
    } else {
      out[key] = to_numpy_any(std::get<Tensor>(v));
    }
  }
  return out;
}

py::bytes to_bytes(const std::vector<uint8_t>& b) {
  return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
}
std::vector<uint8_t> from_bytes(const py::bytes& b) {
  std::string s = b;
  return std::vector<uint8_t>(s.begin(), s.end());
}

// Sample values that are no tuple and no image (nested dicts, handles, other objects) are never inputs of a
// model, so they are left out; `skipped` records them (key -> Python type) per sample, so that a model that
// needs one of those keys reports a wrong type (7790) instead of a missing key.
struct Batch {
  std::vector<Sample> samples;
  std::vector<std::map<std::string, std::string>> skipped;
};

Sample to_sample(const py::handle& d, size_t index, std::map<std::string, std::string>& skipped) {
  if (!py::isinstance<py::dict>(d))
    throw Error(err::kWrongType2, "", "dlsample_batch entry " + std::to_string(index) + " is a " +
                                          py::str(d.get_type().attr("__name__")).cast<std::string>() +
                                          ", not a dict");
  Sample s;
  for (auto kv : py::reinterpret_borrow<py::dict>(d)) {
    if (!py::isinstance<py::str>(kv.first)) continue;
    std::string key = kv.first.cast<std::string>();
    py::handle v = kv.second;
    std::string what = "sample " + std::to_string(index) + ", key '" + key + "'";
    if (py::isinstance<py::array>(v)) {
      py::array a = py::reinterpret_borrow<py::array>(v);
      if (a.ndim() >= 2) {
        s[key] = to_tensor(a, what);
        continue;
      }
    }
    const std::string type = py::str(v.get_type().attr("__name__")).cast<std::string>();
    if (py::isinstance<py::dict>(v)) {
      skipped[key] = type;
      continue;
    }
    try {
      s[key] = to_tuple(v);
    } catch (const Error& e) {
      // A number that is a tuple value but does not fit is refused here, naming the sample and key.
      if (e.code() != err::kWrongType2) throw Error(e.code(), "", what + ": " + e.message());
      skipped[key] = type;
    } catch (const py::error_already_set&) {
      skipped[key] = type;
    }
  }
  return s;
}

Batch to_batch(const py::handle& batch) {
  Batch out;
  auto add = [&](const py::handle& d) {
    out.skipped.emplace_back();
    out.samples.push_back(to_sample(d, out.samples.size(), out.skipped.back()));
  };
  if (py::isinstance<py::dict>(batch)) {
    add(batch);
    return out;
  }
  for (auto d : batch) add(d);
  return out;
}

// Runs a model call on the batch; a key reported missing that the sample holds as a value of no input type is
// reported as that wrong type.
template <class F>
auto on_batch(const Batch& b, F&& call) -> decltype(call(b.samples)) {
  try {
    py::gil_scoped_release nogil;
    return call(b.samples);
  } catch (const Error& e) {
    if (e.code() != err::kInputsMissing) throw;
    const std::string& m = e.message();
    for (size_t i = 0; i < b.skipped.size(); ++i) {
      const std::string tag = "sample " + std::to_string(i);
      const size_t at = m.find(tag);
      if (at == std::string::npos || (at + tag.size() < m.size() && std::isdigit(static_cast<unsigned char>(m[at + tag.size()]))))
        continue;
      for (const auto& kv : b.skipped[i])
        if (m.find("'" + kv.first + "'") != std::string::npos)
          throw Error(err::kInputWrongType, e.op(),
                      tag + ", key '" + kv.first + "': a Python " + kv.second + " is no input value (give a number, "
                      "a string, a list of them, or a numpy image)");
    }
    throw;
  }
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "opendl C++ core (internal; use the opendl package)";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      py::module_ errors = py::module_::import("opendl.errors");
      py::object cls = errors.attr("HOperatorError");
      // A conversion of the arguments failed before the operator ran: name the Python operator that called.
      py::object op = e.op().empty() ? errors.attr("_caller_operator")() : py::str(e.op());
      py::object exc = cls(e.code(), e.message(), op);
      PyErr_SetObject(cls.ptr(), exc.ptr());
    }
  });

  py::class_<HDlLayer>(m, "Layer")
      .def("param", [](const HDlLayer& l, const std::string& n) { return from_tuple(GetDlLayerParam(l, n)); })
      .def_property_readonly("name", [](const HDlLayer& l) { return std::get<std::string>(GetDlLayerParam(l, "name")[0]); })
      .def_property_readonly("key", [](const HDlLayer& l) { return reinterpret_cast<uintptr_t>(l.ptr.get()); });

  py::class_<HDlModel>(m, "Model")
      .def_property_readonly("key", [](const HDlModel& h) { return reinterpret_cast<uintptr_t>(h.ptr.get()); })
      .def("set_param", [](const HDlModel& h, const std::string& n, const py::object& v) { SetDlModelParam(h, n, to_tuple(v, 3)); })
      .def("get_param", [](const HDlModel& h, const std::string& n) { return from_tuple(GetDlModelParam(h, n)); })
      .def("train_batch",
           [](const HDlModel& h, const py::object& batch) {
             auto b = to_batch(batch);
             TrainResult r = on_batch(b, [&](const std::vector<Sample>& s) { return TrainDlModelBatch(h, s); });
             py::dict d;
             for (auto& kv : r) d[py::str(kv.first)] = kv.second;
             return d;
           })
      .def("apply",
           [](const HDlModel& h, const py::object& batch, const std::vector<std::string>& outputs) {
             auto b = to_batch(batch);
             std::vector<Result> r =
                 on_batch(b, [&](const std::vector<Sample>& s) { return ApplyDlModel(h, s, outputs); });
             py::list out;
             for (auto& res : r) {
               py::dict d;
               for (auto& kv : res) {
                 if (auto* t = std::get_if<Tensor>(&kv.second)) d[py::str(kv.first)] = to_numpy(*t);
                 else d[py::str(kv.first)] = from_tuple(std::get<Tuple>(kv.second));
               }
               out.append(d);
             }
             return out;
           })
      .def("get_weights", [](const HDlModel& h, const std::string& l, const std::string& t) {
        return to_numpy(GetDlModelLayerWeights(h, l, t));
      })
      .def("set_weights", [](const HDlModel& h, const py::array& w, const std::string& l, const std::string& t) {
        SetDlModelLayerWeights(to_tensor(w, "weights"), h, l, t);
      })
      .def("activations", [](const HDlModel& h, const std::string& l) { return to_numpy(GetDlModelLayerActivations(h, l)); })
      .def("gradients", [](const HDlModel& h, const std::string& l) { return to_numpy(GetDlModelLayerGradients(h, l)); })
      .def("layer", [](const HDlModel& h, const std::string& l) {
        if (!h.ptr) throw Error(err::kInvalidHandle, "get_dl_model_layer", "the model handle is invalid");
        try {
          return HDlLayer{h.ptr->layer(l)};
        } catch (const Error& e) {
          throw Error(e.code(), "get_dl_model_layer", e.message());
        }
      })
      .def("set_input_gradients", [](const HDlModel& h, bool on) { h.ptr->net().set_input_gradients(on); })
      .def("write", [](const HDlModel& h, const std::string& path) {
        py::gil_scoped_release nogil;
        WriteDlModel(h, path);
      })
      .def("serialize", [](const HDlModel& h) {
        std::vector<uint8_t> b;
        {
          py::gil_scoped_release nogil;
          b = SerializeDlModel(h);
        }
        return to_bytes(b);
      })
      .def("optimize_for_inference",
           [](const HDlModel& h, const std::string& runtime, const std::string& precision, int64_t gpu) {
             HDict report;
             HDlModel c;
             {
               py::gil_scoped_release nogil;
               c = OptimizeDlModelForInference(h, runtime, precision, &report, gpu);
             }
             return py::make_tuple(c, dict_to_tree(*report.ptr));
           },
           py::arg("runtime"), py::arg("precision"), py::arg("gpu") = 0)
      .def("buffer_bytes", [](const HDlModel& h) { return h.ptr->net().buffer_bytes(); })
      .def("folded_layers", [](const HDlModel& h) { return h.ptr->net().folded_layers(); })
      .def("fused_layers", [](const HDlModel& h) { return h.ptr->net().fused_layers(); })
      .def("load_weights_from", [](const HDlModel& target, const HDlModel& source) {
        return LoadDlModelWeights(source, target);
      })
      .def("get_meta_data", [](const HDlModel& h) { return dict_to_tree(*GetDlModelMetaData(h).ptr); })
      .def("set_meta_data", [](const HDlModel& h, const py::object& tree) {
        SetDlModelMetaData(h, HDict{tree_to_dict(tree, 0, 3)});
      });

  m.def("create_layer", [](const std::string& type, const std::vector<HDlLayer>& inputs, const std::string& name,
                           const py::list& positional, const py::object& gen_names, const py::object& gen_values,
                           int first_position) {
    std::vector<Tuple> pos;
    for (auto p : positional) pos.push_back(to_tuple(p, first_position + int(pos.size())));
    const int gen_name_pos = first_position + int(pos.size());
    return CreateDlLayer(type, inputs, name, pos, to_tuple(gen_names, gen_name_pos),
                         to_tuple(gen_values, gen_name_pos + 1), first_position);
  }, py::arg("type"), py::arg("inputs"), py::arg("name"), py::arg("positional"), py::arg("gen_names"),
     py::arg("gen_values"), py::arg("first_position") = 3);
  m.def("create_box_targets", [](const std::vector<HDlLayer>& boxes, const HDlLayer& gt,
                                 const std::vector<HDlLayer>& gtmask, const py::object& names,
                                 const std::string& input_mode, const py::object& modes, int64_t num_classes,
                                 const py::object& gen_names, const py::object& gen_values) {
    DlBoxTargetLayers t = CreateDlLayerBoxTargets(boxes, gt, gtmask, to_tuple(names), input_mode, to_tuple(modes),
                                                  num_classes, to_tuple(gen_names), to_tuple(gen_values));
    return py::make_tuple(t.cls_target, t.cls_weight, t.box_target, t.box_weight, t.num_fg_instances,
                          t.assigned_idxs);
  });
  m.def("create_box_proposals", [](const std::vector<HDlLayer>& scores, const std::vector<HDlLayer>& deltas,
                                   const std::vector<HDlLayer>& boxes, const HDlLayer& image, const std::string& name,
                                   const py::object& gen_names, const py::object& gen_values) {
    return CreateDlLayerBoxProposals(scores, deltas, boxes, image, name, to_tuple(gen_names), to_tuple(gen_values));
  });
  m.def("create_model", [](const std::vector<HDlLayer>& outputs) { return CreateDlModel(outputs); });
  m.def("create_model_detection", [](const std::string& backbone, int64_t num_classes, const py::object& param) {
    HDict d{tree_to_dict(param, 0, 3)};
    py::gil_scoped_release nogil;
    return CreateDlModelDetection(backbone, num_classes, d);
  });
  m.def("read_model", [](const std::string& path) {
    py::gil_scoped_release nogil;
    return ReadDlModel(path);
  });
  m.def("deserialize_model", [](const py::bytes& b) {
    auto v = from_bytes(b);
    py::gil_scoped_release nogil;
    return DeserializeDlModel(v);
  });
  m.def("dict_serialize", [](const py::object& tree) { return to_bytes(serialize_dict(*tree_to_dict(tree, 0, 1))); });
  m.def("dict_deserialize", [](const py::bytes& b) {
    auto v = from_bytes(b);
    return dict_to_tree(*deserialize_dict(v.data(), v.size()));
  });
  m.def("dict_write_file", [](const std::string& path, const py::object& tree) {
    DictPtr d = tree_to_dict(tree, 0, 1);
    py::gil_scoped_release nogil;
    write_dict_file(*d, path);
  });
  m.def("dict_read_file", [](const std::string& path) {
    DictPtr d;
    {
      py::gil_scoped_release nogil;
      d = read_dict_file(path);
    }
    return dict_to_tree(*d);
  });
  // The GPUs the CUDA plugin sees (empty without plugin, driver or GPU) and why CUDA is unavailable.
  m.def("cuda_devices", [] {
    py::list out;
    for (auto& g : cuda_devices()) {
      py::dict d;
      d["id"] = g.id;
      d["name"] = g.name;
      d["total_memory"] = g.total_memory;
      d["compute_capability"] = std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor);
      d["multiprocessor_count"] = g.multiprocessor_count;
      d["pci_bus_id"] = g.pci_bus_id;
      out.append(d);
    }
    return out;
  });
  m.def("cuda_status", [] {
    std::string why;
    int code = 0;
    bool ok = cuda_plugin(&why, &code) != nullptr;
    return py::make_tuple(ok, why, code);
  });
  // The detector's exact IoU of two rectangle2 boxes (row, col, phi, length1, length2); evaluate_dl_model
  // uses it for rectangle2 models.
  m.def("_box_iou_rectangle2", [](std::array<double, 5> a, std::array<double, 5> b) {
    return box_iou(Box2{a[0], a[1], a[2], a[3], a[4]}, Box2{b[0], b[1], b[2], b[3], b[4]});
  });
  // Test hooks: the detector's rectangle2 box encoding and decoding relative to an anchor.
  m.def("_encode_box_rectangle2", [](std::array<double, 5> a, std::array<double, 5> b, bool ignore_direction) {
    std::vector<float> d(size_t(box2_deltas(ignore_direction)));
    encode_box(Box2{a[0], a[1], a[2], a[3], a[4]}, Box2{b[0], b[1], b[2], b[3], b[4]}, ignore_direction, d.data());
    return d;
  });
  m.def("_decode_box_rectangle2", [](std::array<double, 5> a, std::vector<float> d, bool ignore_direction) {
    if (d.size() != size_t(box2_deltas(ignore_direction))) throw std::invalid_argument("wrong number of deltas");
    Box2 b = bm::decode_box(Box2{a[0], a[1], a[2], a[3], a[4]}, d.data(), ignore_direction);
    return std::array<double, 5>{b.r, b.c, b.phi, b.l1, b.l2};
  });
  // Test hooks: blocked activation layouts on / off for networks sized afterwards (graph/network.h), and the
  // planned channel block of each layer's output (0: plain).
  m.def("_set_blocked_layouts", [](bool on) { set_blocked_layouts(on); });
  m.def("_layer_blocks", [](const HDlModel& m) {
    std::map<std::string, int64_t> out;
    for (const auto& s : m.ptr->net().slots()) out[s.layer->name()] = s.block;
    return out;
  });
  m.def("builtin_model_names", [] { return builtin_model_names(); });
  m.def("set_seed", [](uint64_t s) { SetSeed(s); });
  m.def("get_seed", [] { return GetSeed(); });
  m.def("set_thread_seed", [](uint64_t s) { SetThreadSeed(s); });
  m.def("clear_thread_seed", [] { ClearThreadSeed(); });
  m.def("set_thread_num", [](int n) { SetThreadNum(n); });
  m.def("get_thread_num", [] { return GetThreadNum(); });
  m.def("set_deterministic", [](bool on) { SetDeterministic(on); });
  m.def("get_deterministic", [] { return GetDeterministic(); });
  // GPU settings of set_system: 'cudnn_deterministic' and opendl's 'gpu_tf32'.
  m.def("set_cudnn_deterministic", [](bool on) { set_cudnn_deterministic(on); });
  m.def("set_gpu_tf32", [](bool on) { set_gpu_tf32(on); });
  m.def("get_gpu_tf32", [] { return gpu_tf32(); });
  m.def("set_gpu_graphs", [](bool on) { set_gpu_graphs(on); });
  // The convolution plans of the model's backend (all models on that device): channels-last and plain.
  m.def("_conv_plans", [](const HDlModel& h) {
    std::lock_guard<std::mutex> lock(h.ptr->mutex());
    Backend& be = h.ptr->net().backend();
    return std::map<std::string, int64_t>{{"channels_last", be.conv_plans(true)}, {"plain", be.conv_plans(false)}};
  });
  // How a model's training steps ran (CUDA graphs, models/model.h): micro-batches replayed, recordings made, and
  // whether its network cannot be recorded.
  m.def("_train_step_graphs", [](const HDlModel& h) {
    std::lock_guard<std::mutex> lock(h.ptr->mutex());
    const auto st = h.ptr->graph_stats();
    std::map<std::string, int64_t> out;
    out["replayed"] = st.replayed;
    out["recorded"] = st.recorded;
    out["refused"] = st.refused ? 1 : 0;
    return out;
  });
  // Per-layer wall time (Network::set_profiling): switching on clears the counters; _layer_times lists (name, type,
  // forward seconds, forward calls, backward seconds, backward calls) per layer in network order.
  m.def("_set_profiling", [](const HDlModel& h, bool on) {
    std::lock_guard<std::mutex> lock(h.ptr->mutex());
    h.ptr->net().set_profiling(on);
  });
  m.def("_layer_times", [](const HDlModel& h) {
    std::lock_guard<std::mutex> lock(h.ptr->mutex());
    const auto& net = h.ptr->net();
    py::list out;
    const auto& t = net.layer_times();
    for (size_t i = 0; i < net.slots().size() && i < t.size(); ++i) {
      const auto& l = *net.slots()[i].layer;
      out.append(py::make_tuple(l.name(), l.type(), t[i].forward_s, t[i].forward_calls, t[i].backward_s,
                                t[i].backward_calls));
    }
    return out;
  });
}
