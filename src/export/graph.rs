//! A small ONNX graph builder: nodes with fresh value names, initializers as raw little-endian
//! data, typed inputs and outputs, and the serialised `ModelProto`.

use super::proto::{field, DataType, Message};

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
    /// A tensor (for `ConstantOfShape`'s `value`): data type, dims, raw little-endian bytes.
    Tensor(DataType, Vec<i64>, Vec<u8>),
}

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) op: String,
    pub(super) name: String,
    pub(super) inputs: Vec<String>,
    pub(super) outputs: Vec<String>,
    pub(super) attrs: Vec<(String, Attr)>,
}

#[derive(Debug, Clone)]
pub(super) struct Initializer {
    pub(super) name: String,
    pub(super) dtype: DataType,
    pub(super) dims: Vec<i64>,
    pub(super) raw: Vec<u8>,
}

#[derive(Debug, Clone)]
pub(super) struct ValueInfo {
    name: String,
    dtype: DataType,
    /// `None`: the shape is left to the runtime (observation outputs).
    dims: Option<Vec<i64>>,
}

/// An ONNX graph under construction. Value names are unique: `fresh` appends a counter.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    pub name: String,
    pub(super) nodes: Vec<Node>,
    pub(super) initializers: Vec<Initializer>,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
    counter: usize,
    scope: Vec<String>,
}

/// Weight bytes written so far (for the manifest and progress).
impl Graph {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Prefix the names made until the matching `pop_scope` (e.g. `head.head_series.3`).
    pub fn push_scope(&mut self, s: impl Into<String>) {
        self.scope.push(s.into());
    }

    pub fn pop_scope(&mut self) {
        self.scope.pop();
    }

    pub fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        if self.scope.is_empty() {
            format!("{hint}_{}", self.counter)
        } else {
            format!("{}/{hint}_{}", self.scope.join("/"), self.counter)
        }
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes of initializer data.
    pub fn weight_bytes(&self) -> usize {
        self.initializers.iter().map(|i| i.raw.len()).sum()
    }

    pub fn input(&mut self, name: &str, dtype: DataType, dims: &[usize]) -> String {
        self.inputs.push(ValueInfo {
            name: name.into(),
            dtype,
            dims: Some(dims.iter().map(|d| *d as i64).collect()),
        });
        name.into()
    }

    /// Declare `value` as a graph output named `name` (an Identity node renames it).
    pub fn output(&mut self, value: &str, name: &str, dtype: DataType, dims: &[usize]) {
        let dims = dims.iter().map(|d| *d as i64).collect();
        self.push_output(value, name, dtype, Some(dims), "output");
    }

    /// Also output `value` (float, shape left to the runtime) as `name`: what calibration reads.
    pub fn observe(&mut self, value: &str, name: &str) {
        self.push_output(value, name, DataType::Float, None, "observe");
    }

    fn push_output(
        &mut self,
        value: &str,
        name: &str,
        dtype: DataType,
        dims: Option<Vec<i64>>,
        kind: &str,
    ) {
        self.nodes.push(Node {
            op: "Identity".into(),
            name: format!("{kind}/{name}"),
            inputs: vec![value.into()],
            outputs: vec![name.into()],
            attrs: Vec::new(),
        });
        self.outputs.push(ValueInfo {
            name: name.into(),
            dtype,
            dims,
        });
    }

    /// Graph output names.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.outputs.iter().map(|o| o.name.as_str())
    }

    /// A node with given outputs (the rewriting passes name their values themselves).
    pub(super) fn node(
        op: &str,
        name: String,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<(String, Attr)>,
    ) -> Node {
        Node {
            op: op.into(),
            name,
            inputs,
            outputs,
            attrs,
        }
    }

    /// A float initializer with an exact name (checkpoint key) or a fresh one.
    pub fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let name = if self.initializers.iter().any(|i| i.name == name) {
            self.fresh(name)
        } else {
            name.to_string()
        };
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, DataType::Float, dims, raw)
    }

    /// An initializer of any type with an exact name.
    pub(super) fn push_initializer(
        &mut self,
        name: String,
        dtype: DataType,
        dims: &[usize],
        raw: Vec<u8>,
    ) -> String {
        self.initializers.push(Initializer {
            name: name.clone(),
            dtype,
            dims: dims.iter().map(|d| *d as i64).collect(),
            raw,
        });
        name
    }

    /// A float constant (fresh name).
    pub fn const_f32(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        let name = self.fresh(hint);
        self.init_f32(&name, dims, data)
    }

    /// A scalar float constant.
    pub fn scalar(&mut self, v: f32) -> String {
        self.const_f32("scalar", &[], &[v])
    }

    /// An int64 constant (shapes, axes, indices).
    pub fn const_i64(&mut self, hint: &str, dims: &[usize], data: &[i64]) -> String {
        let name = self.fresh(hint);
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, DataType::Int64, dims, raw)
    }

    pub fn ints(&mut self, data: &[i64]) -> String {
        self.const_i64("ints", &[data.len()], data)
    }

    /// A node with one output.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.op_n(op, inputs, 1, attrs).remove(0)
    }

    /// A node with `n` outputs.
    pub fn op_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        n: usize,
        attrs: Vec<(&str, Attr)>,
    ) -> Vec<String> {
        let outputs: Vec<String> = (0..n).map(|_| self.fresh(op)).collect();
        let name = format!("{}#node", outputs[0]);
        self.nodes.push(Node {
            op: op.into(),
            name,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.clone(),
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
        outputs
    }

    // ---- shorthands -------------------------------------------------------------------------

    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.op("Add", &[a, b], vec![])
    }
    pub fn sub(&mut self, a: &str, b: &str) -> String {
        self.op("Sub", &[a, b], vec![])
    }
    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.op("Mul", &[a, b], vec![])
    }
    pub fn div(&mut self, a: &str, b: &str) -> String {
        self.op("Div", &[a, b], vec![])
    }
    pub fn matmul(&mut self, a: &str, b: &str) -> String {
        self.op("MatMul", &[a, b], vec![])
    }
    pub fn relu(&mut self, a: &str) -> String {
        self.op("Relu", &[a], vec![])
    }
    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.ints(shape);
        self.op("Reshape", &[x, &s], vec![])
    }
    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![("perm", Attr::Ints(perm.to_vec()))])
    }
    /// `x[start:end]` along `axis` (Slice-13 with constant starts/ends/axes).
    pub fn slice(&mut self, x: &str, axis: i64, start: i64, end: i64) -> String {
        let s = self.ints(&[start]);
        let e = self.ints(&[end]);
        let a = self.ints(&[axis]);
        self.op("Slice", &[x, &s, &e, &a], vec![])
    }
    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.op("Concat", xs, vec![("axis", Attr::Int(axis))])
    }

    // ---- serialisation ----------------------------------------------------------------------

    fn encode_tensor(name: &str, dtype: DataType, dims: &[i64], raw: &[u8]) -> Message {
        let mut t = Message::new();
        t.packed_ints(field::tensor::DIMS, dims)
            .int(field::tensor::DATA_TYPE, dtype as i64)
            .string(field::tensor::NAME, name)
            .bytes(field::tensor::RAW_DATA, raw);
        t
    }

    fn encode_value_info(v: &ValueInfo) -> Message {
        let mut tensor = Message::new();
        tensor.int(field::value_info::ELEM_TYPE, v.dtype as i64);
        if let Some(dims) = &v.dims {
            let mut shape = Message::new();
            for d in dims {
                let mut dim = Message::new();
                dim.int(field::value_info::DIM_VALUE, *d);
                shape.message(field::value_info::DIM, &dim);
            }
            tensor.message(field::value_info::SHAPE, &shape);
        }
        let mut ty = Message::new();
        ty.message(field::value_info::TENSOR_TYPE, &tensor);
        let mut m = Message::new();
        m.string(field::value_info::NAME, &v.name)
            .message(field::value_info::TYPE, &ty);
        m
    }

    fn encode_attr(name: &str, a: &Attr) -> Message {
        use field::{attr as f, attr_type as ty};
        let mut m = Message::new();
        m.string(f::NAME, name);
        match a {
            Attr::Int(v) => {
                m.int(f::I, *v).int(f::TYPE, ty::INT);
            }
            Attr::Float(v) => {
                m.float(f::F, *v).int(f::TYPE, ty::FLOAT);
            }
            Attr::Ints(v) => {
                m.packed_ints(f::INTS, v).int(f::TYPE, ty::INTS);
            }
            Attr::Floats(v) => {
                m.packed_floats(f::FLOATS, v).int(f::TYPE, ty::FLOATS);
            }
            Attr::Str(s) => {
                m.string(f::S, s).int(f::TYPE, ty::STRING);
            }
            Attr::Tensor(dt, dims, raw) => {
                let t = Self::encode_tensor("value", *dt, dims, raw);
                m.message(f::T, &t).int(f::TYPE, ty::TENSOR);
            }
        }
        m
    }

    fn encode_graph(&self) -> Message {
        let mut g = Message::new();
        for n in &self.nodes {
            let mut m = Message::new();
            for i in &n.inputs {
                m.string(field::node::INPUT, i);
            }
            for o in &n.outputs {
                m.string(field::node::OUTPUT, o);
            }
            m.string(field::node::NAME, &n.name)
                .string(field::node::OP_TYPE, &n.op);
            for (k, a) in &n.attrs {
                m.message(field::node::ATTRIBUTE, &Self::encode_attr(k, a));
            }
            g.message(field::graph::NODE, &m);
        }
        g.string(field::graph::NAME, &self.name);
        for i in &self.initializers {
            g.message(
                field::graph::INITIALIZER,
                &Self::encode_tensor(&i.name, i.dtype, &i.dims, &i.raw),
            );
        }
        for v in &self.inputs {
            g.message(field::graph::INPUT, &Self::encode_value_info(v));
        }
        for v in &self.outputs {
            g.message(field::graph::OUTPUT, &Self::encode_value_info(v));
        }
        g
    }

    /// The serialised `ModelProto` (IR version 8) importing the default domain at `opset`.
    pub fn to_model_bytes(&self, opset: i64, doc: &str, metadata: &[(String, String)]) -> Vec<u8> {
        use field::model as f;
        let mut m = Message::new();
        m.int(f::IR_VERSION, 8)
            .string(f::PRODUCER_NAME, "inspro")
            .string(f::PRODUCER_VERSION, env!("CARGO_PKG_VERSION"))
            .string(f::DOC_STRING, doc);
        let mut opset_id = Message::new();
        opset_id
            .string(field::opset::DOMAIN, "")
            .int(field::opset::VERSION, opset);
        m.message(f::OPSET_IMPORT, &opset_id);
        m.message(f::GRAPH, &self.encode_graph());
        for (k, v) in metadata {
            let mut e = Message::new();
            e.string(field::entry::KEY, k)
                .string(field::entry::VALUE, v);
            m.message(f::METADATA_PROPS, &e);
        }
        m.into_bytes()
    }
}
