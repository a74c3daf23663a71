//! The one H.264 writer and the one decoder, both `gst-launch-1.0` pipelines fed or read through
//! a pipe (no GStreamer library linked into the core): `inspro segment`, the daemon's overlay and
//! `inspro synth --clip` write with [`VideoWriter`]; `inspro segment` reads with [`VideoReader`].

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use crate::frame::FrameRef;

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error(
        "gst-launch-1.0 is not on PATH; install the GStreamer tools (Debian/Ubuntu: \
         gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly, or \
         `scripts/setup.sh apt`)"
    )]
    NoTool,
    #[error("{}: {reason}", path.display())]
    Setting { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: gst-launch-1.0 failed ({status}): {stderr}", path.display())]
    Failed {
        path: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{input}: {reason}")]
    Decode { input: String, reason: String },
}

fn launch_error(e: std::io::Error, path: &Path) -> VideoError {
    if e.kind() == std::io::ErrorKind::NotFound {
        VideoError::NoTool
    } else {
        VideoError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// `gst-launch-1.0` needs quotes around values with spaces.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Raw RGB rows are padded to 4 bytes in GStreamer's default layout.
pub fn rgb_stride(width: usize) -> usize {
    (width * 3).div_ceil(4) * 4
}

/// `gst-launch-1.0` in its own process group: a Ctrl-C meant for the program that runs it does
/// not cut the file short; the program closes the pipe and the pipeline ends the file itself.
fn gst_launch() -> Command {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.process_group(0);
    cmd
}

/// Read a child's stderr to its end on a thread, so a chatty pipeline never blocks on a full
/// pipe; the text comes back from `join`.
fn drain(stderr: Option<ChildStderr>) -> Option<JoinHandle<String>> {
    stderr.map(|mut e| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = e.read_to_string(&mut text);
            text.trim().to_string()
        })
    })
}

fn joined(stderr: Option<JoinHandle<String>>) -> String {
    stderr.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// How a [`VideoWriter`] encodes.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterOptions {
    pub fps: u32,
    /// x264 constant quantizer (0 = lossless in 4:2:0, 18 = visually lossless); `None`: x264's
    /// default rate control, tuned for speed (overlays).
    pub quantizer: Option<u32>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            fps: 30,
            quantizer: None,
        }
    }
}

/// RGB frames in, an H.264 file out (Matroska or MP4 by the file's extension).
pub struct VideoWriter {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    path: PathBuf,
    width: usize,
    height: usize,
    row: Vec<u8>,
}

impl VideoWriter {
    pub fn create(
        path: &Path,
        width: usize,
        height: usize,
        opts: &WriterOptions,
    ) -> Result<Self, VideoError> {
        let setting = |reason: &str| VideoError::Setting {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(setting(&format!(
                "H.264 4:2:0 needs an even width and height, the frames are {width}x{height}"
            )));
        }
        if opts.fps == 0 || opts.quantizer.is_some_and(|q| q > 51) {
            return Err(setting("fps must be > 0 and quantizer within 0..=51"));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let mux = match ext.as_deref() {
            Some("mkv") => "matroskamux",
            Some("mp4") => "mp4mux",
            _ => return Err(setting("the video must end in .mkv or .mp4")),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| VideoError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let fps = opts.fps;
        let x264 = match opts.quantizer {
            Some(q) => {
                format!(
                    "x264enc pass=quant quantizer={q} speed-preset=medium key-int-max={}",
                    fps * 2
                )
            }
            None => "x264enc speed-preset=veryfast tune=zerolatency".to_string(),
        };
        let pipeline = format!(
            "fdsrc fd=0 ! rawvideoparse width={width} height={height} format=rgb framerate={fps}/1 \
             ! videoconvert ! video/x-raw,format=I420 ! {x264} ! h264parse ! {mux} \
             ! filesink location={}",
            quote(&path.display().to_string())
        );
        let mut child = gst_launch()
            .arg("-q")
            .arg("-e")
            .args(pipeline.split_whitespace())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| launch_error(e, path))?;
        let stdin = child.stdin.take();
        let stderr = drain(child.stderr.take());
        Ok(Self {
            child,
            stdin,
            stderr,
            path: path.to_path_buf(),
            width,
            height,
            row: vec![0; rgb_stride(width)],
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// (width, height) of the frames this writer takes.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Append a frame of the writer's size.
    pub fn write(&mut self, frame: &FrameRef<'_>) -> Result<(), VideoError> {
        if (frame.width, frame.height) != (self.width, self.height) {
            return Err(VideoError::Setting {
                path: self.path.clone(),
                reason: format!(
                    "frame is {}x{}, the video {}x{}",
                    frame.width, frame.height, self.width, self.height
                ),
            });
        }
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(VideoError::Io {
                path: self.path.clone(),
                source: std::io::ErrorKind::BrokenPipe.into(),
            });
        };
        let mut written = Ok(());
        for y in 0..self.height {
            let src = frame.row(y);
            self.row[..src.len()].copy_from_slice(src);
            written = stdin.write_all(&self.row);
            if written.is_err() {
                break;
            }
        }
        match written {
            Ok(()) => Ok(()),
            // The pipeline is gone: its exit status and stderr say why, not the broken pipe.
            Err(source) => Err(self.ended().err().unwrap_or(VideoError::Io {
                path: self.path.clone(),
                source,
            })),
        }
    }

    /// Close the pipe and wait for the pipeline; its failure with gst-launch-1.0's stderr.
    fn ended(&mut self) -> Result<(), VideoError> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|source| VideoError::Io {
            path: self.path.clone(),
            source,
        })?;
        let stderr = joined(self.stderr.take());
        if !status.success() {
            return Err(VideoError::Failed {
                path: self.path.clone(),
                status,
                stderr,
            });
        }
        Ok(())
    }

    /// Close the stream and wait for the file to be complete.
    pub fn finish(mut self) -> Result<PathBuf, VideoError> {
        self.ended()?;
        Ok(self.path.clone())
    }
}

impl Drop for VideoWriter {
    /// An unfinished writer (an error, a panic) still ends its pipeline: the pipe closes, the
    /// child is waited for, no zombie stays behind.
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.ended();
        }
    }
}

/// The GStreamer source part of a pipeline for a file path or a URI.
fn source(input: &str) -> Result<String, VideoError> {
    if input.contains("://") {
        return Ok(format!("uridecodebin uri={}", quote(input)));
    }
    let path = Path::new(input);
    if !path.exists() {
        return Err(VideoError::Decode {
            input: input.into(),
            reason: "no such file".into(),
        });
    }
    Ok(format!(
        "filesrc location={} ! decodebin",
        quote(&path.display().to_string())
    ))
}

/// Frames of a video file or URI decoded to RGB by `gst-launch-1.0 … ! fdsink`.
pub struct VideoReader {
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
    finished: bool,
    input: String,
    pub width: usize,
    pub height: usize,
    /// Bytes per row of the frames [`VideoReader::next_frame`] returns.
    pub stride: usize,
    /// Frames per second from the caps (25 when they say nothing).
    pub fps: u32,
}

impl VideoReader {
    pub fn open(input: &str) -> Result<Self, VideoError> {
        let src = source(input)?;
        let convert = "videoconvert ! video/x-raw,format=RGB";
        let here = Path::new(input);
        let decode = |reason: String| VideoError::Decode {
            input: input.into(),
            reason,
        };
        // Probe the decoded size with one buffer (-v prints the negotiated caps).
        let probe = gst_launch()
            .stdin(Stdio::null())
            .arg("-v")
            .args(format!("{src} ! {convert} ! fakesink num-buffers=1").split(' '))
            .output()
            .map_err(|e| launch_error(e, here))?;
        let text = String::from_utf8_lossy(&probe.stdout);
        let caps = text
            .lines()
            .rfind(|l| l.contains("caps = video/x-raw") && l.contains("format=(string)RGB"))
            .ok_or_else(|| {
                decode(format!(
                    "GStreamer could not decode it to RGB video: {}",
                    String::from_utf8_lossy(&probe.stderr).trim()
                ))
            })?;
        let field = |name: &str| -> Option<usize> {
            let rest = caps.split(&format!("{name}=(int)")).nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        let (width, height) = field("width")
            .zip(field("height"))
            .ok_or_else(|| decode(format!("no size in the caps `{caps}`")))?;
        let fps = caps
            .split("framerate=(fraction)")
            .nth(1)
            .and_then(|r| {
                let (n, d) = r.split_once('/')?;
                let d: String = d.chars().take_while(char::is_ascii_digit).collect();
                Some((n.parse::<f64>().ok()?, d.parse::<f64>().ok()?))
            })
            .filter(|(n, d)| *n > 0.0 && *d > 0.0)
            .map_or(25, |(n, d)| (n / d).round().max(1.0) as u32);
        let mut child = gst_launch()
            .stdin(Stdio::null())
            .arg("-q")
            .args(format!("{src} ! {convert} ! fdsink fd=1").split(' '))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| launch_error(e, here))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| decode("gst-launch-1.0 has no stdout".into()))?;
        let stderr = drain(child.stderr.take());
        Ok(Self {
            child,
            stdout,
            stderr,
            finished: false,
            input: input.into(),
            width,
            height,
            stride: rgb_stride(width),
            fps,
        })
    }

    /// The next frame (`stride` x `height` bytes), or `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, VideoError> {
        let mut buf = vec![0u8; self.stride * self.height];
        let mut filled = 0;
        while filled < buf.len() {
            let n = self
                .stdout
                .read(&mut buf[filled..])
                .map_err(|source| VideoError::Io {
                    path: PathBuf::from(&self.input),
                    source,
                })?;
            if n == 0 {
                if filled == 0 {
                    return Ok(None);
                }
                return Err(VideoError::Decode {
                    input: self.input.clone(),
                    reason: format!(
                        "the decoder stopped inside a frame ({filled} of {} bytes)",
                        buf.len()
                    ),
                });
            }
            filled += n;
        }
        Ok(Some(buf))
    }

    /// A frame read by [`VideoReader::next_frame`] as a [`FrameRef`].
    pub fn frame<'a>(&self, data: &'a [u8]) -> FrameRef<'a> {
        FrameRef {
            width: self.width,
            height: self.height,
            stride: self.stride,
            data,
        }
    }

    /// Wait for the decoder; an error when it failed.
    pub fn finish(mut self) -> Result<(), VideoError> {
        self.finished = true;
        let mut rest = Vec::new();
        let _ = self.stdout.read_to_end(&mut rest);
        let status = self.child.wait().map_err(|source| VideoError::Io {
            path: PathBuf::from(&self.input),
            source,
        })?;
        if !status.success() {
            return Err(VideoError::Failed {
                path: PathBuf::from(&self.input),
                status,
                stderr: joined(self.stderr.take()),
            });
        }
        Ok(())
    }
}

impl Drop for VideoReader {
    /// A reader dropped before the end stops its decoder and waits for it.
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
