//! The edge daemon: GStreamer ingest, the engine thread per camera, tracks, MQTT publishing.
