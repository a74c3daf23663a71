//! The `inspro` element: a `BaseTransform` that runs the shared `StreamProcessor` (engine, stream
//! state, track lifecycle) on every frame, in place.

use gst::glib;
use gst::prelude::*;

mod imp;
mod meta;
mod pixels;

/// Name of the `GstCustomMeta` on every buffer; read it with
/// `gst_buffer_get_custom_meta(buf, "InsProTracksMeta")` (C), `buf.get_custom_meta(...)` (Python)
/// or `gst::meta::CustomMeta::from_buffer(buf, TRACKS_META)` (Rust).
pub const TRACKS_META: &str = "InsProTracksMeta";

/// Name of the element messages posted with `emit-messages=true` (as `level` posts `level`).
pub const MESSAGE_NAME: &str = "inspro-tracks";

/// Name of the element messages posted when a track crosses a line of the `rules` file.
pub const LINE_MESSAGE_NAME: &str = "inspro-line";

/// Which engine runs the network.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstInsProEngine")]
pub enum EngineKind {
    #[enum_value(name = "ONNX Runtime (an exported .onnx model)", nick = "onnxruntime")]
    Onnxruntime = 0,
    #[enum_value(
        name = "candle (pure Rust reference, safetensors weights)",
        nick = "candle"
    )]
    Candle = 1,
}

/// Where the engine runs.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstInsProExecutionProvider")]
pub enum ExecutionProvider {
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu = 0,
    #[enum_value(name = "CUDA (onnxruntime only)", nick = "cuda")]
    Cuda = 1,
    #[enum_value(name = "TensorRT (onnxruntime only)", nick = "tensorrt")]
    Tensorrt = 2,
    #[enum_value(
        name = "The fastest the ONNX Runtime library offers: TensorRT, then CUDA, then the CPU",
        nick = "auto"
    )]
    Auto = 3,
}

glib::wrapper! {
    pub struct InsProElement(ObjectSubclass<imp::InsPro>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    if !gst::meta::CustomMeta::is_registered(TRACKS_META) {
        // Tagged `video` only. A `size` tag would make GStreamer 1.22's videoconvert drop it too
        // (videoconvertscale asks a size-tagged meta to transform itself, and a GstCustomMeta
        // without a transform function can only copy). So the meta survives conversion and
        // scaling alike; its coordinates stay in the pixels of the frame the element saw, which
        // the meta's `width` and `height` name.
        gst::meta::CustomMeta::register(TRACKS_META, &["video"]);
    }
    gst::Element::register(
        Some(plugin),
        "inspro",
        gst::Rank::NONE,
        InsProElement::static_type(),
    )
}
