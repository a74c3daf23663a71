//! The subset of the ONNX protobuf schema (`onnx/onnx.proto`, IR version 8) that the exporter
//! writes, encoded by hand: protobuf is only varints, little-endian fixed32 and length-delimited
//! fields, and the crates that ship generated ONNX types either need `protoc` at build time or
//! pull a whole protobuf runtime for what is ~150 lines of writing.

/// Declares `pub mod <message> { pub const <FIELD>: <type> = <number>; ... }` from one line per
/// message of `onnx.proto`, so the table reads like the schema it copies.
macro_rules! proto_numbers {
    ($($(#[$doc:meta])* $message:ident: $ty:ty { $($name:ident = $number:literal),* $(,)? })*) => {
        $($(#[$doc])* pub mod $message { $(pub const $name: $ty = $number;)* })*
    };
}

/// Field numbers and enum values from `onnx.proto`.
pub mod field {
    proto_numbers! {
        /// `ModelProto`.
        model: u32 { IR_VERSION = 1, PRODUCER_NAME = 2, PRODUCER_VERSION = 3, DOC_STRING = 6,
            GRAPH = 7, OPSET_IMPORT = 8, METADATA_PROPS = 14 }
        /// `GraphProto`.
        graph: u32 { NODE = 1, NAME = 2, INITIALIZER = 5, INPUT = 11, OUTPUT = 12 }
        /// `NodeProto`.
        node: u32 { INPUT = 1, OUTPUT = 2, NAME = 3, OP_TYPE = 4, ATTRIBUTE = 5 }
        /// `AttributeProto`.
        attr: u32 { NAME = 1, F = 2, I = 3, S = 4, T = 5, FLOATS = 7, INTS = 8, TYPE = 20 }
        /// `AttributeProto.AttributeType`.
        attr_type: i64 { FLOAT = 1, INT = 2, STRING = 3, TENSOR = 4, FLOATS = 6, INTS = 7 }
        /// `TensorProto`.
        tensor: u32 { DIMS = 1, DATA_TYPE = 2, NAME = 8, RAW_DATA = 9 }
        /// `ValueInfoProto` {name, type}, then `TypeProto.tensor_type`,
        /// `TypeProto.Tensor.{elem_type, shape}`, `TensorShapeProto.dim`, `Dimension.dim_value`.
        value_info: u32 { NAME = 1, TYPE = 2, TENSOR_TYPE = 1, ELEM_TYPE = 1, SHAPE = 2, DIM = 1,
            DIM_VALUE = 1 }
        /// `OperatorSetIdProto`.
        opset: u32 { DOMAIN = 1, VERSION = 2 }
        /// `StringStringEntryProto`.
        entry: u32 { KEY = 1, VALUE = 2 }
    }
}

/// `TensorProto.DataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Float = 1,
    Uint8 = 2,
    Int8 = 3,
    Int32 = 6,
    Int64 = 7,
    Bool = 9,
}

/// A protobuf message being written.
#[derive(Debug, Default, Clone)]
pub struct Message {
    buf: Vec<u8>,
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn tag(&mut self, field: u32, wire: u8) {
        put_varint(&mut self.buf, (u64::from(field) << 3) | u64::from(wire));
    }

    /// int32 / int64 / enum: negative values are sign-extended to 10 bytes, as protobuf does.
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.tag(field, 0);
        put_varint(&mut self.buf, v as u64);
        self
    }

    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.tag(field, 5);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.tag(field, 2);
        put_varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    pub fn string(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    pub fn message(&mut self, field: u32, m: &Message) -> &mut Self {
        self.bytes(field, &m.buf)
    }

    /// A packed repeated int64 field.
    pub fn packed_ints(&mut self, field: u32, vs: &[i64]) -> &mut Self {
        let mut body = Vec::with_capacity(vs.len() * 2);
        for v in vs {
            put_varint(&mut body, *v as u64);
        }
        self.bytes(field, &body)
    }

    /// A packed repeated float field.
    pub fn packed_floats(&mut self, field: u32, vs: &[f32]) -> &mut Self {
        let body: Vec<u8> = vs.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_match_the_protobuf_encoding_guide() {
        // protobuf.dev "Encoding": field 1 = 150 is 08 96 01.
        let mut m = Message::new();
        m.int(1, 150);
        assert_eq!(m.clone().into_bytes(), vec![0x08, 0x96, 0x01]);
        // field 2 = "testing" is 12 07 74 65 73 74 69 6e 67.
        let mut m = Message::new();
        m.string(2, "testing");
        assert_eq!(
            m.into_bytes(),
            vec![0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67]
        );
        // -1 as int64 is ten bytes.
        let mut m = Message::new();
        m.int(1, -1);
        assert_eq!(m.len(), 11);
        // packed [3, 270, 86942] in field 4 is 22 06 03 8E 02 9E A7 05.
        let mut m = Message::new();
        m.packed_ints(4, &[3, 270, 86942]);
        assert_eq!(
            m.into_bytes(),
            vec![0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]
        );
    }
}
