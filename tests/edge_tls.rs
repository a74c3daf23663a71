//! MQTT over TLS in the default edge build, against a real mosquitto with TLS listeners and
//! password logins (mosquitto_passwd), with certificates made here by rcgen: a CA, the broker's
//! certificate (for 127.0.0.1), a client certificate, and a second, unrelated CA. The daemon
//! connects with the right CA and password, and with a client certificate where the broker
//! requires one; a wrong CA or a wrong password gives a clear log line, no crash, and a clean stop.
#![cfg(feature = "edge")]

mod edge_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("CA certificate")
}

fn make_pki(dir: &Path) -> Pki {
    let ca1 = ca("inspro test CA");
    let ca2 = ca("some other CA");
    let server_key = KeyPair::generate().expect("key");
    let mut sp = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    sp.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    sp.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sp.signed_by(&server_key, &ca1).expect("server certificate");
    let client_key = KeyPair::generate().expect("key");
    let mut cp = CertificateParams::new(Vec::<String>::new()).expect("params");
    cp.distinguished_name
        .push(DnType::CommonName, "inspro-test");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = cp.signed_by(&client_key, &ca1).expect("client certificate");
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write PEM");
        p
    };
    Pki {
        ca: w("ca.pem", ca1.pem()),
        other_ca: w("other-ca.pem", ca2.pem()),
        server_cert: w("server.pem", server.pem()),
        server_key: w("server.key", server_key.serialize_pem()),
        client_cert: w("client.pem", client.pem()),
        client_key: w("client.key", client_key.serialize_pem()),
    }
}

/// mosquitto with three listeners: plain and anonymous (for the test's subscriber), TLS with a
/// password, and TLS with a password and a required client certificate.
struct TlsBroker {
    plain: u16,
    tls: u16,
    mtls: u16,
    child: Child,
}

impl TlsBroker {
    fn start(dir: &Path, pki: &Pki) -> Self {
        let passwd = dir.join("passwd");
        let st = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args(["edge", "right-password"])
            .status()
            .expect("mosquitto_passwd (package mosquitto; scripts/setup.sh)");
        assert!(st.success());
        let (plain, tls, mtls) = (free_port(), free_port(), free_port());
        let tls_files = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}\n",
            pki.ca.display(),
            pki.server_cert.display(),
            pki.server_key.display(),
            passwd.display()
        );
        let mut conf = format!(
            "per_listener_settings true\nlog_dest stdout\nlog_type all\npersistence false\n\
             listener {plain} 127.0.0.1\nallow_anonymous true\n\
             listener {tls} 127.0.0.1\n{tls_files}\
             listener {mtls} 127.0.0.1\n{tls_files}require_certificate true\n"
        );
        if is_root() {
            conf += "user root\n";
        }
        std::fs::write(dir.join("mosquitto.conf"), conf).expect("conf");
        let log = std::fs::File::create(dir.join("mosquitto.log")).expect("log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("mosquitto");
        let end = Instant::now() + Duration::from_secs(10);
        for port in [plain, tls, mtls] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < end, "mosquitto did not listen on {port}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Self {
            plain,
            tls,
            mtls,
            child,
        }
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

const CAMERA: &str =
    "[[camera]]\nname = \"cam\"\nuri = \"test:black?live=true&width=64&height=48&fps=2\"\nwidth = 64\nheight = 48\n";

/// A config for `port` over TLS with `ca`, the user `edge` and a password file holding
/// `password`, plus `extra` keys of `[mqtt.tls]`.
fn tls_config(
    dir: &Path,
    name: &str,
    port: u16,
    ca: &Path,
    password: &str,
    extra: &str,
) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).expect("dir");
    let pw = sub.join("password");
    std::fs::write(&pw, format!("{password}\n")).expect("password");
    let cfg = test_config(&sub, &format!("mqtts://127.0.0.1:{port}"), CAMERA, "");
    let text = std::fs::read_to_string(&cfg).expect("config").replace(
        "topic_prefix = \"t\"",
        &format!(
            "topic_prefix = \"t\"\nusername = \"edge\"\npassword_file = \"{}\"\n\
             tls = {{ ca_file = \"{}\"{extra} }}",
            pw.display(),
            ca.display()
        ),
    );
    std::fs::write(&cfg, text).expect("config");
    cfg
}

fn stop(mut d: Daemon) -> String {
    d.signal("TERM");
    let st = d.wait(Duration::from_secs(60));
    let log = d.log_text();
    assert!(st.success(), "exit {st:?}:\n{log}");
    log
}

#[test]
fn tls_logins_right_and_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let broker = TlsBroker::start(dir.path(), &pki);
    let sub = Subscriber::start(broker.plain, "t/#", false);
    let online = |sub: &Subscriber, what: &str| {
        sub.wait_for(Duration::from_secs(90), what, |m| {
            m.iter()
                .any(|m| m.topic == "t/available" && m.payload == "online")
        });
    };

    // The right CA and password: connected, `online` arrives.
    let cfg = tls_config(dir.path(), "ok", broker.tls, &pki.ca, "right-password", "");
    let d = Daemon::spawn(&cfg, &[], &[]);
    online(&sub, "online over TLS");
    let log = stop(d);
    assert!(log.contains("connected to the MQTT broker"), "{log}");
    sub.msgs.lock().unwrap().clear();

    // A client certificate where the broker requires one.
    let extra = format!(
        ", client_cert = \"{}\", client_key = \"{}\"",
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let cfg = tls_config(
        dir.path(),
        "mtls",
        broker.mtls,
        &pki.ca,
        "right-password",
        &extra,
    );
    let d = Daemon::spawn(&cfg, &[], &[]);
    online(&sub, "online over mutual TLS");
    stop(d);
    sub.msgs.lock().unwrap().clear();

    // Faults: each must be said clearly, once, without a crash; the daemon keeps running.
    let cases = [
        (
            "wrong-ca",
            broker.tls,
            &pki.other_ca,
            "right-password",
            String::new(),
            "TLS with the MQTT broker failed",
        ),
        (
            "wrong-password",
            broker.tls,
            &pki.ca,
            "wrong-password",
            String::new(),
            "rejected the login",
        ),
        (
            "no-client-cert",
            broker.mtls,
            &pki.ca,
            "right-password",
            String::new(),
            "TLS with the MQTT broker failed",
        ),
    ];
    for (name, port, ca, password, extra, expect) in cases {
        let cfg = tls_config(dir.path(), name, port, ca, password, &extra);
        let mut d = Daemon::spawn(&cfg, &[], &[]);
        let end = Instant::now() + Duration::from_secs(90);
        while !d.log_text().contains(expect) {
            assert!(
                Instant::now() < end,
                "{name}: no `{expect}` line:\n{}",
                d.log_text()
            );
            assert!(
                d.child.try_wait().unwrap().is_none(),
                "{name}: exited:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Several attempts later, still one line and still running.
        std::thread::sleep(Duration::from_secs(3));
        assert!(d.child.try_wait().unwrap().is_none(), "{name}: exited");
        let log = stop(d);
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(expect)).collect();
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        eprintln!("{name}: {}", lines[0]);
        assert!(!log.contains("panicked"), "{log}");
        assert!(
            !sub.snapshot()
                .iter()
                .any(|m| m.topic == "t/available" && m.payload == "online"),
            "{name}: connected anyway"
        );
    }
}
