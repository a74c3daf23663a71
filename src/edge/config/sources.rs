//! URI parsing: the camera sources (`file://`, `rtsp://`, `v4l2://`, `test:`) and the MQTT
//! broker URL.

use std::fmt;
use std::path::PathBuf;

use super::schema::{CameraConfig, MqttConfig, Pace, MAX_SIDE};

/// The nicks of videotestsrc's `pattern` enum (GStreamer 1.22); a test against the installed
/// element keeps this list true. Only these reach the element (as a property, never pipeline text).
pub const VIDEOTESTSRC_PATTERNS: &[&str] = &[
    "smpte",
    "snow",
    "black",
    "white",
    "red",
    "green",
    "blue",
    "checkers-1",
    "checkers-2",
    "checkers-4",
    "checkers-8",
    "circular",
    "blink",
    "smpte75",
    "zone-plate",
    "gamut",
    "chroma-zone-plate",
    "solid-color",
    "ball",
    "smpte100",
    "bar",
    "pinwheel",
    "spokes",
    "gradient",
    "colors",
    "smpte-rp-219",
];
/// A parsed camera URI.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceUri {
    File(PathBuf),
    Rtsp(String),
    V4l2(PathBuf),
    Test(TestSource),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestSource {
    pub pattern: String,
    pub live: bool,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// -1 = endless.
    pub num_buffers: i64,
}

impl SourceUri {
    pub fn parse(uri: &str) -> Result<Self, String> {
        if let Some(rest) = uri.strip_prefix("file://") {
            if rest.is_empty() {
                return Err("file:// needs a path".into());
            }
            return Ok(SourceUri::File(PathBuf::from(rest)));
        }
        if uri.starts_with("rtsp://") || uri.starts_with("rtsps://") {
            return Ok(SourceUri::Rtsp(uri.to_string()));
        }
        if let Some(rest) = uri.strip_prefix("v4l2://") {
            let dev = if rest.is_empty() { "/dev/video0" } else { rest };
            return Ok(SourceUri::V4l2(PathBuf::from(dev)));
        }
        if let Some(rest) = uri.strip_prefix("test:") {
            let rest = rest.trim_start_matches("//");
            let (pattern, query) = rest.split_once('?').unwrap_or((rest, ""));
            let mut t = TestSource {
                pattern: if pattern.is_empty() {
                    "ball".into()
                } else {
                    pattern.into()
                },
                live: true,
                width: 320,
                height: 240,
                fps: 30,
                num_buffers: -1,
            };
            for kv in query.split('&').filter(|s| !s.is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("test source option `{kv}` is not key=value"))?;
                let bad = |e: &dyn fmt::Display| format!("test source option `{k}={v}`: {e}");
                match k {
                    "live" => t.live = v.parse().map_err(|e| bad(&e))?,
                    "width" => t.width = v.parse().map_err(|e| bad(&e))?,
                    "height" => t.height = v.parse().map_err(|e| bad(&e))?,
                    "fps" => t.fps = v.parse().map_err(|e| bad(&e))?,
                    "num_buffers" => t.num_buffers = v.parse().map_err(|e| bad(&e))?,
                    _ => {
                        return Err(format!(
                        "unknown test source option `{k}` (live, width, height, fps, num_buffers)"
                    ))
                    }
                }
            }
            if !VIDEOTESTSRC_PATTERNS.contains(&t.pattern.as_str()) {
                return Err(format!(
                    "unknown test pattern `{}` (videotestsrc patterns: {})",
                    t.pattern.escape_debug(),
                    VIDEOTESTSRC_PATTERNS.join(", ")
                ));
            }
            if t.width == 0 || t.height == 0 || t.fps == 0 {
                return Err("test source width, height and fps must be positive".into());
            }
            if t.width > MAX_SIDE || t.height > MAX_SIDE || t.fps > 1000 {
                return Err(format!(
                    "test source width and height must be at most {MAX_SIDE}, fps at most 1000"
                ));
            }
            return Ok(SourceUri::Test(t));
        }
        if let Some((scheme, _)) = uri.split_once("://") {
            return Err(format!(
                "unknown scheme `{scheme}` (use file://, rtsp://, v4l2:// or test:)"
            ));
        }
        if uri.is_empty() {
            return Err("empty".into());
        }
        Ok(SourceUri::File(PathBuf::from(uri)))
    }

    /// Live sources drop frames when the engine is slow; files wait.
    pub fn is_live(&self) -> bool {
        match self {
            SourceUri::File(_) => false,
            SourceUri::Test(t) => t.live,
            _ => true,
        }
    }
}

/// An `rtsp://` URI split for rtspsrc: the location without credentials, and the user and
/// password that were in it (percent-decoded). The credentials go to rtspsrc's `user-id` and
/// `user-pw`, so no URL that GStreamer prints or reports carries them.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspUrl {
    pub location: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtspUrl")
            .field("location", &self.location)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RtspUrl {
    pub fn parse(uri: &str) -> Self {
        let (scheme, rest) = uri.split_once("://").unwrap_or(("rtsp", uri));
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(percent_decode(p))),
                    None => (userinfo, None),
                };
                Self {
                    location: format!("{scheme}://{host}{path}"),
                    user: (!user.is_empty()).then(|| percent_decode(user)),
                    password,
                }
            }
            None => Self {
                location: uri.to_string(),
                user: None,
                password: None,
            },
        }
    }

    /// The URI as it may be shown: the user kept, a password replaced by `***`.
    pub fn redacted(&self) -> String {
        match &self.user {
            Some(u) => {
                let (scheme, rest) = self
                    .location
                    .split_once("://")
                    .unwrap_or(("rtsp", &self.location));
                let pw = if self.password.is_some() { ":***" } else { "" };
                format!("{scheme}://{u}{pw}@{rest}")
            }
            None => self.location.clone(),
        }
    }
}

/// `%XX` escapes decoded (a malformed escape is kept as written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl CameraConfig {
    pub fn source(&self) -> Result<SourceUri, String> {
        SourceUri::parse(&self.uri)
    }

    /// Whether the pipeline plays at the clip's own frame rate: a file (or a non-live test
    /// source) under `pace = "drop"` behaves like a live camera of that rate, so `loop_file`
    /// loops once per clip duration. Live sources come at their own rate anyway; under `block`
    /// a file is read as fast as the engine takes it.
    pub fn plays_in_real_time(&self) -> bool {
        self.drops_frames() && self.source().is_ok_and(|s| !s.is_live())
    }

    /// Whether frames are dropped (true) or the source waits (false).
    pub fn drops_frames(&self) -> bool {
        match self.pace {
            Pace::Drop => true,
            Pace::Block => false,
            Pace::Auto => self.source().map(|s| s.is_live()).unwrap_or(true),
        }
    }
}
/// The parts of `mqtt.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl MqttConfig {
    pub fn broker(&self) -> Result<BrokerAddr, String> {
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = self.url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(format!(
                "`{}` does not start with mqtt:// or mqtts://",
                self.url
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("port `{p}` is not a number in 1..65535"))?;
                (h.trim_matches(|c| c == '[' || c == ']').to_string(), port)
            }
            _ => (rest.to_string(), if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        if port == 0 {
            return Err("port 0".into());
        }
        Ok(BrokerAddr { host, port, tls })
    }
}
