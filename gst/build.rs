fn main() {
    // COMMIT_ID and BUILD_REL_DATE for plugin_define! (shown by gst-inspect-1.0).
    gst_plugin_version_helper::info()
}
