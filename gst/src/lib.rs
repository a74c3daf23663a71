//! The GStreamer plugin `inspro`: online video instance segmentation (InsPro) as a drop-in
//! `Filter/Analyzer/Video` element. Video passes through (or gets an overlay with `draw=true`);
//! every buffer carries its frame's tracks as a `GstCustomMeta` named [`TRACKS_META`], and the
//! element posts `inspro-tracks` element messages when `emit-messages=true`.
//!
//! Built as `libgstinspro.so` for `GST_PLUGIN_PATH`, and as an rlib so that applications and
//! tests can call [`plugin_register_static`] instead.

use gst::glib;

pub mod inspro;

pub use inspro::{MESSAGE_NAME, TRACKS_META};

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    inspro::register(plugin)
}

gst::plugin_define!(
    inspro,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    // One of GStreamer's known licence strings (the crate is Apache-2.0).
    "Apache 2.0",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    "Unknown package origin",
    env!("BUILD_REL_DATE")
);
