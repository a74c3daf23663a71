//! A small RTSP camera to try `inspro run` against, and the one the camera tests use: GStreamer's
//! RTSP server (libgstrtspserver, Debian's `libgstrtspserver-1.0-dev`) serving a live H.264
//! stream of videotestsrc on `rtsp://127.0.0.1:PORT/cam`, with digest authentication when a user
//! is given. It can also misbehave on purpose, as cameras do:
//!
//!   cargo run --example rtsp_server --features edge -- --port 8554 [--user U --password-file F]
//!       [--size 320x192] [--fps 10] [--stall-after S] [--resize-after S --resize-to WxH]
//!
//! `--stall-after S`: after S seconds no more media flows, the connection stays open.
//! `--resize-after S --resize-to WxH`: after S seconds the stream's resolution changes.
//! It prints `ready <url>` on stdout once it listens. Stop it with a signal.

use std::time::Duration;

use gstreamer_rtsp_server as rtsp;
use rtsp::gst;
use rtsp::gst::prelude::*;
use rtsp::prelude::*;

struct Args {
    port: u16,
    user: Option<String>,
    password: Option<String>,
    size: (u32, u32),
    fps: u32,
    stall_after: Option<f64>,
    resize: Option<(f64, (u32, u32))>,
}

fn size(s: &str) -> anyhow::Result<(u32, u32)> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| anyhow::anyhow!("`{s}` is not WxH"))?;
    Ok((w.parse()?, h.parse()?))
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        port: 8554,
        user: None,
        password: None,
        size: (320, 192),
        fps: 10,
        stall_after: None,
        resize: None,
    };
    let mut resize_after = None;
    let mut resize_to = None;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{k} needs a value"))
        };
        match k.as_str() {
            "--port" => a.port = v()?.parse()?,
            "--user" => a.user = Some(v()?),
            "--password-file" => {
                let p = std::fs::read_to_string(v()?)?;
                a.password = Some(p.trim_end_matches(['\n', '\r']).to_string());
            }
            "--size" => a.size = size(&v()?)?,
            "--fps" => a.fps = v()?.parse()?,
            "--stall-after" => a.stall_after = Some(v()?.parse()?),
            "--resize-after" => resize_after = Some(v()?.parse()?),
            "--resize-to" => resize_to = Some(size(&v()?)?),
            _ => anyhow::bail!("unknown argument {k} (see the file's header)"),
        }
    }
    if let (Some(s), Some(to)) = (resize_after, resize_to) {
        a.resize = Some((s, to));
    }
    Ok(a)
}

fn caps(size: (u32, u32), fps: u32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("width", size.0 as i32)
        .field("height", size.1 as i32)
        .field("framerate", gst::Fraction::new(fps as i32, 1))
        .build()
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    gst::init()?;
    let main_loop = rtsp::glib::MainLoop::new(None, false);
    let server = rtsp::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&a.port.to_string());
    let mounts = server
        .mount_points()
        .ok_or_else(|| anyhow::anyhow!("no mount points"))?;
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(&format!(
        "( videotestsrc is-live=true pattern=ball ! capsfilter name=size caps=\"{}\" \
         ! valve name=valve ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast \
         key-int-max={} ! rtph264pay name=pay0 pt=96 config-interval=1 )",
        caps(a.size, a.fps),
        a.fps
    ));
    // One pipeline for every client, so that the misbehaviour timers act on what they see.
    factory.set_shared(true);
    let (stall_after, resize, fps) = (a.stall_after, a.resize, a.fps);
    factory.connect_media_configure(move |_, media| {
        let bin = media.element();
        if let (Some(s), Some(valve)) = (
            stall_after,
            bin.downcast_ref::<gst::Bin>()
                .and_then(|b| b.by_name("valve")),
        ) {
            rtsp::glib::timeout_add_once(Duration::from_secs_f64(s), move || {
                eprintln!("rtsp_server: stalling (no more media)");
                valve.set_property("drop", true);
            });
        }
        if let (Some((s, to)), Some(filter)) = (
            resize,
            bin.downcast_ref::<gst::Bin>()
                .and_then(|b| b.by_name("size")),
        ) {
            rtsp::glib::timeout_add_once(Duration::from_secs_f64(s), move || {
                eprintln!("rtsp_server: resizing to {}x{}", to.0, to.1);
                filter.set_property("caps", caps(to, fps));
            });
        }
    });
    if let Some(user) = &a.user {
        let password = a
            .password
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--user needs --password-file"))?;
        let auth = rtsp::RTSPAuth::new();
        auth.set_supported_methods(rtsp::gst_rtsp::RTSPAuthMethod::Digest);
        let token = rtsp::RTSPToken::builder()
            .field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE, user.as_str())
            .build();
        auth.add_digest(user, password, &token);
        server.set_auth(Some(&auth));
        let role = gst::Structure::builder(user.as_str())
            .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
            .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
            .build();
        factory.add_role_from_structure(&role);
    }
    mounts.add_factory("/cam", factory);
    let _id = server.attach(None)?;
    println!("ready rtsp://127.0.0.1:{}/cam", server.bound_port());
    main_loop.run();
    Ok(())
}
