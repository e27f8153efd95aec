#pragma once
// ONNX export: nabla::onnx::export_model(module, example_inputs, path, ExportOptions{...}).
//
// The module's forward runs once on the example inputs with a tracer installed (autograd/
// trace.hpp): each op reports itself, with its inputs, outputs and attributes, and each report
// becomes ONNX nodes (lowering below). Parameters and buffers become initializers under their
// state_dict names; tensors made inside forward from no input (an arange, a mask) become
// initializers too. With dynamic_batch the forward runs a second time with one more row in
// every input: what differs between the two runs is the batch, so a Reshape target that holds
// the batch becomes 0 (copy) or -1 (infer), and anything else that depends on it (a constant
// made from the input's size, an attribute) is refused with an error naming the op, never
// frozen into a graph that is only right for one batch size. An op with no mapping is an
// error naming it.
//
// The file is written with a small protobuf wire-format writer (io/protobuf.hpp), not
// libprotobuf: the ModelProto subset is a dozen message types, and a header-only library should
// not ask its users for protoc and a generated-code dependency to export a model (docs/inference.md).
// Models over 2 GiB need ONNX's external-data format, which this writer does not produce yet.

#include <bit>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../autograd/trace.hpp"
#include "../nn/functional.hpp"
#include "../nn/module.hpp"
#include "../ops/all.hpp"
#include "protobuf.hpp"
#include "safetensors.hpp"

namespace nabla {
namespace onnx {

struct ExportOptions {
  int64_t opset = 17;               // 13 to 21
  bool dynamic_batch = true;        // dim 0 of every input and output is the symbolic "batch"
  std::vector<std::string> input_names{};   // default "input" (one input) or "input_0", "input_1", ...
  std::vector<std::string> output_names{};  // default "output" or "output_0", ...
  std::string producer_name = "nabla";
};

namespace detail {

using nabla::detail::cat;
using trace::Record;

// TensorProto.DataType
inline int32_t onnx_dtype(DType d) {
  switch (d) {
    case kFloat32: return 1;
    case kUInt8: return 2;
    case kInt32: return 6;
    case kInt64: return 7;
    case kBool: return 9;
    case kFloat16: return 10;
    case kFloat64: return 11;
    case kBFloat16: return 16;
  }
  return 0;
}

struct NodeAttr {
  enum Kind { Float = 1, Int = 2, String = 3, Floats = 6, Ints = 7 } kind;
  std::string name;
  double f = 0;
  int64_t i = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
};
inline NodeAttr attr_i(std::string n, int64_t v) { return {NodeAttr::Int, std::move(n), 0, v, {}, {}, {}}; }
inline NodeAttr attr_f(std::string n, double v) { return {NodeAttr::Float, std::move(n), v, 0, {}, {}, {}}; }
inline NodeAttr attr_s(std::string n, std::string v) { return {NodeAttr::String, std::move(n), 0, 0, std::move(v), {}, {}}; }
inline NodeAttr attr_ints(std::string n, std::vector<int64_t> v) { return {NodeAttr::Ints, std::move(n), 0, 0, {}, std::move(v), {}}; }

struct Node {
  std::string op_type;
  std::vector<std::string> inputs, outputs;
  std::vector<NodeAttr> attrs;
  std::string name;
};

// One graph input or output: name, dtype, and shape with the dims that are the batch.
struct ValueInfo {
  std::string name;
  DType dtype;
  Shape shape;
  std::vector<bool> symbolic;
};

// The ONNX graph under construction, and its serialisation as a ModelProto.
class Graph {
 public:
  std::vector<Node> nodes;
  std::vector<std::pair<std::string, Tensor>> initializers;  // contiguous CPU tensors
  std::vector<ValueInfo> inputs, outputs;

  std::string fresh(const std::string& stem) { return cat(stem, "_", counter_++); }

  // Adds a node; its outputs are named after its op unless given. Returns the output names.
  std::vector<std::string> add(const std::string& op, std::vector<std::string> in, std::vector<NodeAttr> attrs = {},
                               int n_out = 1) {
    Node n{op, std::move(in), {}, std::move(attrs), fresh("/" + op)};
    for (int k = 0; k < n_out; ++k) n.outputs.push_back(n.name + "_output_" + std::to_string(k));
    nodes.push_back(n);
    return nodes.back().outputs;
  }
  std::string add1(const std::string& op, std::vector<std::string> in, std::vector<NodeAttr> attrs = {}) {
    return add(op, std::move(in), std::move(attrs))[0];
  }
  std::string initializer(const std::string& name, const Tensor& t) {
    initializers.emplace_back(name, t.detach().to(Device::cpu()).contiguous());
    return name;
  }
  std::string constant(const Tensor& t, const std::string& stem = "onnx::Constant") {
    return initializer(fresh(stem), t);
  }
  std::string ints(const std::vector<int64_t>& v) {
    return constant(from_vector(v, Shape{static_cast<int64_t>(v.size())}, TensorOptions(kInt64)));
  }
  std::string scalar(double v, DType dtype) { return constant(full({}, v, TensorOptions(dtype))); }
  // A constant of int8 values, held as their two's-complement bytes in a uint8 tensor (nabla has
  // no int8 dtype): written with ONNX's INT8 type.
  std::string int8_constant(const Tensor& bytes) {
    NABLA_CHECK(bytes.dtype() == kUInt8, ValueError, "onnx: int8 constants come as their bytes in a uint8 tensor, got ",
                nabla::detail::describe(bytes));
    std::string name = constant(bytes, "onnx::Int8");
    int8_names_.insert(name);
    return name;
  }

  std::string serialize(int64_t opset, const std::string& producer) const {
    io::proto::Writer graph;
    for (const auto& n : nodes) graph.message_field(1, node_proto(n));
    graph.bytes_field(2, "main_graph");
    for (const auto& [name, t] : initializers) graph.message_field(5, tensor_proto(name, t, int8_names_.count(name) > 0));
    for (const auto& v : inputs) graph.message_field(11, value_info(v));
    for (const auto& v : outputs) graph.message_field(12, value_info(v));
    io::proto::Writer opset_id;
    opset_id.bytes_field(1, "");
    opset_id.varint_field(2, opset);
    io::proto::Writer model;
    model.varint_field(1, ir_version(opset));
    model.bytes_field(2, producer);
    model.bytes_field(3, "0.1");
    model.message_field(7, graph);
    model.message_field(8, opset_id);
    return model.bytes();
  }
  // The lowest IR version that carries the opset (onnx.helper.VERSION_TABLE).
  static int64_t ir_version(int64_t opset) { return opset <= 14 ? 7 : opset <= 18 ? 8 : opset <= 20 ? 9 : 10; }

 private:
  static io::proto::Writer node_proto(const Node& n) {
    io::proto::Writer w;
    for (const auto& i : n.inputs) w.bytes_field(1, i);
    for (const auto& o : n.outputs) w.bytes_field(2, o);
    w.bytes_field(3, n.name);
    w.bytes_field(4, n.op_type);
    for (const auto& a : n.attrs) {
      io::proto::Writer aw;
      aw.bytes_field(1, a.name);
      switch (a.kind) {
        case NodeAttr::Float: aw.float_field(2, static_cast<float>(a.f)); break;
        case NodeAttr::Int: aw.varint_field(3, a.i); break;
        case NodeAttr::String: aw.bytes_field(4, a.s); break;
        case NodeAttr::Floats:
          for (double f : a.floats) aw.float_field(7, static_cast<float>(f));
          break;
        case NodeAttr::Ints:
          for (int64_t v : a.ints) aw.varint_field(8, v);
          break;
      }
      aw.varint_field(20, a.kind);
      w.message_field(5, aw);
    }
    return w;
  }
  static io::proto::Writer tensor_proto(const std::string& name, const Tensor& t, bool int8) {
    static_assert(std::endian::native == std::endian::little, "ONNX raw_data is little-endian");
    io::proto::Writer w;
    for (int64_t d : t.sizes()) w.varint_field(1, d);
    w.varint_field(2, int8 ? 3 : onnx_dtype(t.dtype()));  // TensorProto.INT8 = 3
    w.bytes_field(8, name);
    const size_t nbytes = static_cast<size_t>(t.numel()) * element_size(t.dtype());
    w.bytes_field(9, std::string_view(static_cast<const char*>(t.data_ptr()), nbytes));
    return w;
  }
  static io::proto::Writer value_info(const ValueInfo& v) {
    io::proto::Writer shape;
    for (size_t i = 0; i < v.shape.size(); ++i) {
      io::proto::Writer dim;
      if (v.symbolic[i]) dim.bytes_field(2, "batch");
      else dim.varint_field(1, v.shape[i]);
      shape.message_field(1, dim);
    }
    io::proto::Writer tensor_type;
    tensor_type.varint_field(1, onnx_dtype(v.dtype));
    tensor_type.message_field(2, shape);
    io::proto::Writer type;
    type.message_field(1, tensor_type);
    io::proto::Writer w;
    w.bytes_field(1, v.name);
    w.message_field(2, type);
    return w;
  }
  int64_t counter_ = 0;
  std::unordered_set<std::string> int8_names_;
};

// Collects the records of one traced forward (and keeps every tensor in them alive, so no
// address is reused while the trace is read).
struct Recorder final : trace::Tracer {
  std::vector<Record> records;
  void record(Record r) override { records.push_back(std::move(r)); }
};

// Turns the records of the first trace into nodes, using the second (one more row per input;
// null without dynamic_batch) to tell which numbers are the batch.
class Lowering {
 public:
  Lowering(Graph& g, const ExportOptions& o, std::unordered_map<const TensorImpl*, std::string> state)
      : g_(g), opt_(o), state_(std::move(state)) {}

  void bind(const Tensor& t, const std::string& name) { names_[t.impl()] = name; }
  bool known(const Tensor& t) const { return names_.count(t.impl()) > 0; }
  const std::string& name_of(const Tensor& t) const { return names_.at(t.impl()); }

  void lower(const Record& r, const Record* r2) {
    r_ = &r;
    r2_ = r2;
    emit();
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw ValueError(cat("onnx::export_model: ", r_->op, " (output ", describe_out(), "): ", why));
  }
  std::string describe_out() const {
    return r_->outputs.empty() || !r_->outputs[0].defined() ? std::string("none") : nabla::detail::describe(r_->outputs[0]);
  }

  // The name of input k; a constant becomes an initializer (converted to `as` when given, so a
  // Python-number 0-dim float64 feeds a float32 Mul directly); a value of another dtype gets a Cast.
  std::string in(size_t k, std::optional<DType> as = std::nullopt) {
    const Tensor& t = r_->inputs[k];
    if (!t.defined()) return "";
    auto it = names_.find(t.impl());
    if (it == names_.end()) {
      auto st = state_.find(t.impl());
      if (st != state_.end()) {
        it = names_.emplace(t.impl(), g_.initializer(st->second, t)).first;
      } else {
        if (auto fn = t.grad_fn())
          fail(cat("input ", k, " (", nabla::detail::describe(t), ") was computed from the traced inputs by ", fn->name(),
                   ", an op the tracer does not see: it has no ONNX mapping yet"));
        check_constant_stable(k);
        if (as && *as != t.dtype()) return g_.constant(t.to(*as));  // the constant converted, no Cast node
        it = names_.emplace(t.impl(), g_.constant(t)).first;
      }
    }
    if (as && *as != t.dtype()) return g_.add1("Cast", {it->second}, {attr_i("to", onnx_dtype(*as))});
    return it->second;
  }
  // A constant that differs between the two traces depends on the input: refuse it.
  void check_constant_stable(size_t k) const {
    if (!r2_) return;
    const Tensor& a = r_->inputs[k];
    const Tensor& b = k < r2_->inputs.size() ? r2_->inputs[k] : Tensor();
    if (!b.defined() || a.sizes() != b.sizes() || a.dtype() != b.dtype() ||
        !nabla::equal(a.detach().to(Device::cpu()), b.detach().to(Device::cpu())))
      fail(cat("input ", k, " (", nabla::detail::describe(a),
               ") is not computed from the traced inputs by ops the tracer sees, yet it changes with the input (",
               b.defined() ? nabla::detail::describe(b) : std::string("absent"),
               " for one more row); an op without an ONNX mapping made it"));
  }
  void out(const std::string& name, size_t k = 0) { names_[r_->outputs[k].impl()] = name; }
  DType dtype_attr() const { return static_cast<DType>(r_->i("dtype")); }
  const Shape& in_shape(size_t k) const { return r_->inputs[k].sizes(); }

  // An int/ints attribute that must not change with the batch.
  void same_in_both(const std::string& name) const {
    if (!r2_) return;
    const trace::Attr* a = r_->find(name);
    const trace::Attr* b = r2_->find(name);
    if (a && b && a->value != b->value) fail(cat("its attribute '", name, "' changes with the batch size"));
  }

  void emit() {
    const std::string& op = r_->op;
    auto unary = [&](const char* onnx_op) { out(g_.add1(onnx_op, {in(0, dtype_attr())})); };
    if (op == "Neg" || op == "Abs" || op == "Sign" || op == "Relu" || op == "Floor" || op == "Ceil" || op == "Round" ||
        op == "Exp" || op == "Log" || op == "Sqrt" || op == "Reciprocal" || op == "Sin" || op == "Cos" || op == "Tanh" ||
        op == "Sigmoid" || op == "Erf")
      return unary(op.c_str());
    if (op == "Square") {
      std::string x = in(0, dtype_attr());
      return out(g_.add1("Mul", {x, x}));
    }
    if (op == "LeakyRelu") return out(g_.add1("LeakyRelu", {in(0, dtype_attr())}, {attr_f("alpha", r_->f("a"))}));
    if (op == "Clamp") {
      const DType dt = dtype_attr();
      return out(g_.add1("Clip", {in(0, dt), g_.scalar(r_->f("a"), dt), g_.scalar(r_->f("b"), dt)}));
    }
    if (op == "Rsqrt") return out(g_.add1("Reciprocal", {g_.add1("Sqrt", {in(0, dtype_attr())})}));
    if (op == "Log1p") {
      const DType dt = dtype_attr();
      return out(g_.add1("Log", {g_.add1("Add", {in(0, dt), g_.scalar(1, dt)})}));
    }
    if (op == "Expm1") {
      const DType dt = dtype_attr();
      return out(g_.add1("Sub", {g_.add1("Exp", {in(0, dt)}), g_.scalar(1, dt)}));
    }
    if (op == "Silu") {
      std::string x = in(0, dtype_attr());
      return out(g_.add1("Mul", {x, g_.add1("Sigmoid", {x})}));
    }
    if (op == "Gelu" || op == "GeluTanh") return gelu(op == "GeluTanh");
    if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow") return binary(op, false);
    if (op == "Maximum") return binary("Max", false);
    if (op == "Minimum") return binary("Min", false);
    if (op == "LogicalAnd") return binary("And", true);
    if (op == "LogicalOr") return binary("Or", true);
    if (op == "Eq") return binary("Equal", false);
    if (op == "Lt") return binary("Less", false);
    if (op == "Le") return binary("LessOrEqual", false);
    if (op == "Gt") return binary("Greater", false);
    if (op == "Ge") return binary("GreaterOrEqual", false);
    if (op == "Ne") {
      const DType dt = dtype_attr();
      return out(g_.add1("Not", {g_.add1("Equal", {in(0, dt), in(1, dt)})}));
    }
    if (op == "Where") {
      const DType dt = dtype_attr();
      return out(g_.add1("Where", {in(0), in(1, dt), in(2, dt)}));
    }
    if (op.rfind("Reduce", 0) == 0) return reduce();
    if (op == "Reshape") return reshape();
    if (op == "Transpose") return out(g_.add1("Transpose", {in(0)}, {attr_ints("perm", r_->ints("perm"))}));
    if (op == "Slice") return slice();
    if (op == "Select") {
      same_in_both("index");
      return out(g_.add1("Gather", {in(0), g_.constant(full({}, r_->i("index"), TensorOptions(kInt64)))},
                         {attr_i("axis", r_->i("axis"))}));
    }
    if (op == "Expand") return expand();
    if (op == "Identity") return out(in(0));
    if (op == "Cast") {
      const DType to = static_cast<DType>(r_->i("dtype"));
      return out(g_.add1("Cast", {in(0)}, {attr_i("to", onnx_dtype(to))}));
    }
    if (op == "Conv") return conv();
    if (op == "BatchNorm") return batch_norm();
    if (op == "LayerNorm") return layer_norm();
    if (op == "Linear") return linear();
    if (op == "MatMul") return out(g_.add1("MatMul", {in(0), in(1)}));
    if (op == "Softmax" || op == "LogSoftmax") {
      const DType dt = r_->outputs[0].dtype();
      return out(g_.add1(op, {in(0, dt)}, {attr_i("axis", r_->i("axis"))}));
    }
    if (op == "MaxPool" || op == "AveragePool") return pool();
    if (op == "AdaptiveAvgPool") return adaptive_pool();
    if (op == "Gather") return out(g_.add1("Gather", {in(0), in(1)}, {attr_i("axis", r_->i("axis"))}));
    if (op == "Concat") {
      std::vector<std::string> parts;
      const DType dt = r_->outputs[0].dtype();
      for (size_t k = 0; k < r_->inputs.size(); ++k) parts.push_back(in(k, dt));
      return out(g_.add1("Concat", parts, {attr_i("axis", r_->i("axis"))}));
    }
    if (op == "ArgMax" || op == "ArgMin")
      return out(g_.add1(op, {in(0)}, {attr_i("axis", r_->i("axis")), attr_i("keepdims", r_->i("keepdims"))}));
    if (op == "Attention") return attention();
    if (op == "QuantizeDequantize" || op == "DequantizeInt8" || op == "DynamicQuantizeDequantize") return qdq();
    if (op == "Dropout")
      fail("dropout in training mode is random; export runs the module in eval mode, so this is a functional "
           "dropout(x, p, /*training=*/true) call");
    fail(cat("no ONNX mapping for this op (opset ", opt_.opset, ")"));
  }

  void binary(const std::string& onnx_op, bool logical) {
    const DType dt = logical ? kBool : dtype_attr();
    out(g_.add1(onnx_op, {in(0, dt), in(1, dt)}));
  }

  void gelu(bool tanh_form) {
    const DType dt = dtype_attr();
    std::string x = in(0, dt);
    if (opt_.opset >= 20)
      return out(g_.add1("Gelu", {x}, {attr_s("approximate", tanh_form ? "tanh" : "none")}));
    std::string inner;
    if (!tanh_form) {  // 0.5 x (1 + erf(x / sqrt 2))
      inner = g_.add1("Erf", {g_.add1("Mul", {x, g_.scalar(0.7071067811865476, dt)})});
    } else {  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
      std::string x3 = g_.add1("Mul", {g_.add1("Mul", {x, x}), x});
      std::string u = g_.add1("Add", {x, g_.add1("Mul", {x3, g_.scalar(0.044715, dt)})});
      inner = g_.add1("Tanh", {g_.add1("Mul", {u, g_.scalar(0.7978845608028654, dt)})});
    }
    std::string half_x = g_.add1("Mul", {x, g_.scalar(0.5, dt)});
    out(g_.add1("Mul", {half_x, g_.add1("Add", {inner, g_.scalar(1, dt)})}));
  }

  void reduce() {
    const std::string& op = r_->op;
    const DType dt = dtype_attr();
    std::vector<int64_t> axes = r_->ints("axes");
    std::string x = in(0, dt);
    std::vector<NodeAttr> attrs{attr_i("keepdims", r_->i("keepdims"))};
    if (axes.empty()) return out(g_.add1("Identity", {x}));  // a 0-dim input: nothing to reduce
    const bool axes_input = op == "ReduceSum" || opt_.opset >= 18;
    if (axes_input) return out(g_.add1(op, {x, g_.ints(axes)}, attrs));
    attrs.push_back(attr_ints("axes", axes));
    out(g_.add1(op, {x}, attrs));
  }

  // A Reshape target: numbers that change with the batch become 0 (copy the input's dim) or -1.
  void reshape() {
    std::vector<int64_t> shape = r_->ints("shape");
    if (r2_) {
      const std::vector<int64_t>& shape2 = r2_->ints("shape");
      const Shape& a = in_shape(0);
      const Shape& b = r2_->inputs[0].sizes();
      if (shape2.size() != shape.size()) fail("its rank changes with the batch size");
      int inferred = 0;
      for (size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == shape2[i]) {
          if (shape[i] == 0) fail("an empty dimension cannot be exported with dynamic_batch");
          continue;
        }
        if (i < a.size() && a[i] == shape[i] && b[i] == shape2[i]) shape[i] = 0;
        else if (++inferred == 1) shape[i] = -1;
        else fail(cat("two dimensions of its target ", shape_str(Shape(shape.begin(), shape.end())), " change with the batch size"));
      }
    }
    out(g_.add1("Reshape", {in(0), g_.ints(shape)}));
  }

  void slice() {
    int64_t start = r_->i("start"), end = r_->i("end");
    if (r2_) {
      if (r2_->i("start") != start || r2_->i("axis") != r_->i("axis") || r2_->i("step") != r_->i("step"))
        fail("its start changes with the batch size");
      if (r2_->i("end") != end) {
        if (end == r_->i("size") && r2_->i("end") == r2_->i("size")) end = std::numeric_limits<int64_t>::max();
        else fail("its end changes with the batch size");
      }
    }
    out(g_.add1("Slice", {in(0), g_.ints({start}), g_.ints({end}), g_.ints({r_->i("axis")}), g_.ints({r_->i("step")})}));
  }

  void expand() {
    std::vector<int64_t> shape = r_->ints("shape");
    if (r2_) {
      const std::vector<int64_t>& shape2 = r2_->ints("shape");
      const Shape& a = in_shape(0);
      const Shape& b = r2_->inputs[0].sizes();
      const size_t off = shape.size() - a.size();
      for (size_t i = 0; i < shape.size(); ++i)
        if (shape[i] != shape2[i]) {
          if (i >= off && a[i - off] == shape[i] && b[i - off] == shape2[i]) shape[i] = 1;  // the input's own dim
          else fail("its target shape changes with the batch size");
        }
    }
    out(g_.add1("Expand", {in(0), g_.ints(shape)}));
  }

  // int8 quantization as QDQ pairs (what TensorRT and onnxruntime fuse into int8 kernels):
  //   QuantizeDequantize         activation, affine uint8 per tensor (attrs scale, zero_point)
  //   DequantizeInt8             int8 weights (input 0: their bytes, uint8), symmetric per axis
  //                              (input 1: float scales), zero points 0
  //   DynamicQuantizeDequantize  activation quantized from its own range (DynamicQuantizeLinear)
  void qdq() {
    const std::string& op = r_->op;
    if (op == "DequantizeInt8") {
      const Tensor& codes = r_->inputs[0];
      const int64_t axis = r_->i("axis"), channels = codes.size(axis);
      std::string zero = g_.int8_constant(zeros({channels}, TensorOptions(kUInt8)));
      return out(g_.add1("DequantizeLinear", {g_.int8_constant(codes), in(1), zero}, {attr_i("axis", axis)}));
    }
    if (r_->inputs[0].dtype() != kFloat32) fail("quantized activations are float32");
    if (op == "DynamicQuantizeDequantize") {
      std::vector<std::string> q = g_.add("DynamicQuantizeLinear", {in(0)}, {}, 3);
      return out(g_.add1("DequantizeLinear", {q[0], q[1], q[2]}));
    }
    std::string scale = g_.scalar(r_->f("scale"), kFloat32), zp = g_.scalar(static_cast<double>(r_->i("zero_point")), kUInt8);
    out(g_.add1("DequantizeLinear", {g_.add1("QuantizeLinear", {in(0), scale, zp}), scale, zp}));
  }

  void conv() {
    if (r_->i("channels_last")) fail("a channels-last conv2d is not exportable yet; export the NCHW model");
    for (const char* a : {"strides", "pads", "dilations", "group"}) same_in_both(a);
    const Shape& w = in_shape(1);
    std::vector<std::string> ins{in(0), in(1)};
    if (r_->inputs[2].defined()) ins.push_back(in(2));
    out(g_.add1("Conv", ins,
                {attr_ints("kernel_shape", {w[2], w[3]}), attr_ints("strides", r_->ints("strides")),
                 attr_ints("pads", r_->ints("pads")), attr_ints("dilations", r_->ints("dilations")),
                 attr_i("group", r_->i("group"))}));
  }

  void batch_norm() {
    if (r_->i("training"))
      fail("batch_norm with training=true uses the batch's statistics; export runs the module in eval mode, so "
           "this is a functional call with training set");
    if (!r_->inputs[3].defined() || !r_->inputs[4].defined())
      fail("batch_norm without running statistics (track_running_stats=false) normalises with the batch's own "
           "statistics, which BatchNormalization does not do");
    const Tensor& x = r_->inputs[0];
    const int64_t C = x.size(1);
    const DType dt = x.dtype();
    std::string scale = r_->inputs[1].defined() ? in(1) : g_.constant(ones({C}, TensorOptions(dt)));
    std::string bias = r_->inputs[2].defined() ? in(2) : g_.constant(zeros({C}, TensorOptions(dt)));
    out(g_.add1("BatchNormalization", {in(0), scale, bias, in(3), in(4)}, {attr_f("epsilon", r_->f("epsilon"))}));
  }

  void layer_norm() {
    if (opt_.opset < 17) fail("LayerNormalization needs opset 17 or later (ExportOptions::opset)");
    const Tensor& x = r_->inputs[0];
    const int64_t axis = r_->i("axis");
    Shape ns(x.sizes().end() + axis, x.sizes().end());
    std::string scale = r_->inputs[1].defined() ? in(1) : g_.constant(ones(ns, TensorOptions(x.dtype())));
    std::vector<std::string> ins{in(0), scale};
    if (r_->inputs[2].defined()) ins.push_back(in(2));
    out(g_.add1("LayerNormalization", ins, {attr_i("axis", axis), attr_f("epsilon", r_->f("epsilon"))}));
  }

  void linear() {
    const Tensor& x = r_->inputs[0];
    if (x.dim() == 2) {  // Gemm: x W^T + b
      std::vector<std::string> ins{in(0), in(1)};
      if (r_->inputs[2].defined()) ins.push_back(in(2));
      return out(g_.add1("Gemm", ins, {attr_i("transB", 1)}));
    }
    std::string y = g_.add1("MatMul", {in(0), g_.add1("Transpose", {in(1)}, {attr_ints("perm", {1, 0})})});
    if (r_->inputs[2].defined()) y = g_.add1("Add", {y, in(2)});
    out(y);
  }

  void pool() {
    for (const char* a : {"kernel_shape", "strides", "pads"}) same_in_both(a);
    if (r_->inputs[0].dim() != 4) fail("only 4-D [N, C, H, W] inputs are exported");
    std::vector<NodeAttr> attrs{attr_ints("kernel_shape", r_->ints("kernel_shape")), attr_ints("strides", r_->ints("strides")),
                                attr_ints("pads", r_->ints("pads")), attr_i("ceil_mode", r_->i("ceil_mode"))};
    if (r_->op == "MaxPool") {
      attrs.push_back(attr_ints("dilations", r_->ints("dilations")));
    } else {
      if (r_->i("divisor_override") != 0) fail("avg_pool2d's divisor_override has no ONNX equivalent");
      attrs.push_back(attr_i("count_include_pad", r_->i("count_include_pad")));
    }
    out(g_.add1(r_->op, {in(0)}, attrs));
  }

  void adaptive_pool() {
    const Tensor& x = r_->inputs[0];
    if (x.dim() != 4) fail("only 4-D [N, C, H, W] inputs are exported");
    const std::vector<int64_t>& o = r_->ints("output_size");
    const int64_t H = x.size(2), W = x.size(3);
    if (o[0] == 1 && o[1] == 1) return out(g_.add1("GlobalAveragePool", {in(0)}));
    if (H % o[0] != 0 || W % o[1] != 0)
      fail(cat("adaptive_avg_pool2d from ", H, "x", W, " to ", o[0], "x", o[1],
               " has windows of different sizes; only an output that divides the input (or 1x1) is exported"));
    const std::vector<int64_t> k{H / o[0], W / o[1]};
    out(g_.add1("AveragePool", {in(0)}, {attr_ints("kernel_shape", k), attr_ints("strides", k)}));
  }

  // softmax(q k^T * scale + mask) v, with the causal mask as a constant lower triangle.
  void attention() {
    if (r_->f("dropout_p") > 0) fail("attention dropout is random; export runs the module in eval mode");
    const Tensor& q = r_->inputs[0];
    const Tensor& k = r_->inputs[1];
    const int64_t r = k.dim(), L = q.size(-2), S = k.size(-2);
    std::vector<int64_t> perm;
    for (int64_t i = 0; i < r; ++i) perm.push_back(i);
    std::swap(perm[static_cast<size_t>(r - 2)], perm[static_cast<size_t>(r - 1)]);
    const DType dt = q.dtype();
    std::string kt = g_.add1("Transpose", {in(1)}, {attr_ints("perm", perm)});
    std::string s = g_.add1("Mul", {g_.add1("MatMul", {in(0), kt}), g_.scalar(r_->f("scale"), dt)});
    const std::string minus_inf = g_.scalar(-std::numeric_limits<double>::infinity(), dt);
    if (r_->i("is_causal")) {
      Tensor keep = tril(ones({L, S}, TensorOptions(kBool)));
      s = g_.add1("Where", {g_.constant(keep, "onnx::CausalMask"), s, minus_inf});
    }
    const Tensor& mask = r_->inputs[3];
    if (mask.defined()) {
      if (mask.dtype() == kBool) s = g_.add1("Where", {in(3), s, minus_inf});
      else s = g_.add1("Add", {s, in(3, dt)});
    }
    std::string p = g_.add1("Softmax", {s}, {attr_i("axis", -1)});
    out(g_.add1("MatMul", {p, in(2)}));
  }

  Graph& g_;
  const ExportOptions& opt_;
  std::unordered_map<const TensorImpl*, std::string> state_;  // parameters and buffers -> state_dict names
  std::unordered_map<const TensorImpl*, std::string> names_;  // tensors in the graph -> value names
  const Record* r_ = nullptr;
  const Record* r2_ = nullptr;
};

// Runs fn on the inputs with a tracer installed (grad mode on, so that a tensor derived from the
// inputs by an op the tracer does not see carries a grad_fn and is caught).
struct Trace {
  std::vector<Tensor> inputs, outputs;
  std::vector<Record> records;
};
inline Trace run_traced(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
                        const std::vector<Tensor>& example) {
  Trace t;
  for (const auto& x : example)
    t.inputs.push_back(x.is_floating_point() ? x.detach().clone().requires_grad_(true) : x.detach().clone());
  Recorder rec;
  {
    autograd::EnableGradGuard grad;
    trace::TracerGuard guard(rec);
    t.outputs = fn(t.inputs);
  }
  t.records = std::move(rec.records);
  return t;
}

// The inputs with one more row: rows shifted by one and the first repeated, so that values
// computed from the data differ too.
inline Tensor one_more_row(const Tensor& x) {
  const int64_t B = x.size(0);
  return B >= 2 ? nabla::cat({x.narrow(0, 1, B - 1), x.narrow(0, 0, 2)}, 0) : nabla::cat({x, x}, 0);
}

inline std::vector<std::string> default_names(const std::vector<std::string>& given, size_t n, const char* stem) {
  if (!given.empty()) {
    NABLA_CHECK(given.size() == n, ValueError, "onnx::export_model: ", given.size(), " ", stem, " names for ", n, " ",
                stem, "s");
    return given;
  }
  if (n == 1) return {stem};
  std::vector<std::string> v;
  for (size_t i = 0; i < n; ++i) v.push_back(cat(stem, "_", i));
  return v;
}

}  // namespace detail

// Builds the ONNX model of fn (inputs -> outputs) as a ModelProto's bytes. `state` names the
// tensors that become named initializers (a module's parameters and buffers).
inline std::string export_bytes(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
                                const std::vector<std::pair<std::string, Tensor>>& state,
                                const std::vector<Tensor>& example_inputs, const ExportOptions& options = {}) {
  NABLA_CHECK(options.opset >= 13 && options.opset <= 21, ValueError, "onnx::export_model: opset ", options.opset,
              " is not supported (13 to 21)");
  NABLA_CHECK(!example_inputs.empty(), ValueError, "onnx::export_model: no example inputs");
  for (const auto& x : example_inputs) {
    nabla::detail::check_defined(x, "onnx::export_model");
    NABLA_CHECK(!options.dynamic_batch || x.dim() >= 1, ShapeError, "onnx::export_model: with dynamic_batch every input "
                "needs a batch dimension (dim 0), got ", nabla::detail::describe(x));
  }
  detail::Trace t1 = detail::run_traced(fn, example_inputs);
  std::optional<detail::Trace> t2;
  if (options.dynamic_batch) {
    std::vector<Tensor> more;
    for (const auto& x : example_inputs) more.push_back(detail::one_more_row(x.detach()));
    t2 = detail::run_traced(fn, more);
    NABLA_CHECK(t2->records.size() == t1.records.size() && t2->outputs.size() == t1.outputs.size(), ValueError,
                "onnx::export_model: the forward runs ", t1.records.size(), " ops for batch ", example_inputs[0].size(0),
                " but ", t2->records.size(), " for batch ", example_inputs[0].size(0) + 1,
                "; a graph with a dynamic batch needs the same ops for every batch size (dynamic_batch = false exports "
                "this batch size only)");
    for (size_t i = 0; i < t1.records.size(); ++i)
      NABLA_CHECK(t1.records[i].op == t2->records[i].op, ValueError, "onnx::export_model: op ", i, " is ",
                  t1.records[i].op, " for one batch size and ", t2->records[i].op,
                  " for another; the forward depends on the batch size");
  }

  std::unordered_map<const TensorImpl*, std::string> state_names;
  for (const auto& [name, t] : state)
    if (t.defined()) state_names.emplace(t.impl(), name);
  detail::Graph g;
  detail::Lowering low(g, options, state_names);
  const auto in_names = detail::default_names(options.input_names, t1.inputs.size(), "input");
  for (size_t i = 0; i < t1.inputs.size(); ++i) {
    const Tensor& x = t1.inputs[i];
    std::vector<bool> sym(static_cast<size_t>(x.dim()), false);
    if (t2) sym[0] = true;
    g.inputs.push_back({in_names[i], x.dtype(), x.sizes(), sym});
    low.bind(x, in_names[i]);
  }
  for (size_t i = 0; i < t1.records.size(); ++i) low.lower(t1.records[i], t2 ? &t2->records[i] : nullptr);

  const auto out_names = detail::default_names(options.output_names, t1.outputs.size(), "output");
  for (size_t i = 0; i < t1.outputs.size(); ++i) {
    const Tensor& y = t1.outputs[i];
    nabla::detail::check_defined(y, "onnx::export_model (an output)");
    std::string src;
    if (low.known(y)) {
      src = low.name_of(y);
    } else {
      NABLA_CHECK(!y.grad_fn(), ValueError, "onnx::export_model: output ", i, " (", nabla::detail::describe(y),
                  ") comes from ", y.grad_fn()->name(), ", an op the tracer does not see: it has no ONNX mapping yet");
      src = g.constant(y);
    }
    g.nodes.push_back({"Identity", {src}, {out_names[i]}, {}, "/output_" + std::to_string(i)});
    std::vector<bool> sym(static_cast<size_t>(y.dim()), false);
    if (t2) {
      const Shape& s2 = t2->outputs[i].sizes();
      NABLA_CHECK(s2.size() == y.sizes().size(), ValueError, "onnx::export_model: output ", i, " changes rank with the batch size");
      for (size_t d = 0; d < sym.size(); ++d) sym[d] = s2[d] != y.sizes()[d];
    }
    g.outputs.push_back({out_names[i], y.dtype(), y.sizes(), sym});
  }
  std::string bytes = g.serialize(options.opset, options.producer_name);
  NABLA_CHECK(bytes.size() < (size_t{2} << 30), ValueError, "onnx::export_model: the model is ", bytes.size() >> 20,
              " MiB; protobuf files stop at 2 GiB and ONNX's external-data format is not written yet");
  return bytes;
}

// Exports module.forward(example_inputs[0]) (modules with one input; export_bytes takes any
// function) to `path`, written atomically. The module runs in eval mode (its mode is restored
// afterwards); parameters and buffers keep their state_dict names.
inline void export_model(nn::Module& module, const std::vector<Tensor>& example_inputs, const std::string& path,
                         const ExportOptions& options = {}) {
  NABLA_CHECK(example_inputs.size() == 1, ValueError, "onnx::export_model: a module's forward takes one tensor, got ",
              example_inputs.size(), " example inputs (export_bytes exports a function of several)");
  std::vector<std::pair<std::string, Tensor>> state;
  for (const auto& [name, t] : module.named_parameters()) state.emplace_back(name, t);
  for (const auto& [name, t] : module.named_buffers()) state.emplace_back(name, t);
  const bool was_training = module.is_training();
  module.eval();
  std::string bytes;
  try {
    bytes = export_bytes([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{module.forward(in[0])}; }, state,
                         example_inputs, options);
  } catch (...) {
    module.train(was_training);
    throw;
  }
  module.train(was_training);
  io::detail::atomic_write(path, [&](auto& write) { write(bytes.data(), bytes.size()); });
}
template <class M>
  requires std::is_base_of_v<nn::Module, M>
void export_model(const std::shared_ptr<M>& module, const std::vector<Tensor>& example_inputs, const std::string& path,
                  const ExportOptions& options = {}) {
  NABLA_CHECK(module != nullptr, ValueError, "onnx::export_model: the module is null");
  export_model(static_cast<nn::Module&>(*module), example_inputs, path, options);
}

}  // namespace onnx
}  // namespace nabla
