//! Hostile plugin: tries every ambient authority WASI could give — files, directories, env,
//! args, stdin, sockets — and reports what it got as the attributes of one asset. The host
//! must grant none of it.

use std::io::Read;

use airlock_sdk::{AssetKind, Connector, Emitter, Error, PluginInfo, Scope};
use serde_json::json;

struct Probe;

fn outcome<T, E: std::fmt::Display>(r: Result<T, E>) -> serde_json::Value {
    match r {
        Ok(_) => json!("granted"),
        Err(e) => json!(format!("denied: {e}")),
    }
}

impl Connector for Probe {
    type Config = serde_json::Value;

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-probe", "0.0.0", "probes for ambient authority")
    }

    fn extract(_: Self::Config, _: &Scope, out: &mut Emitter) -> Result<(), Error> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let args: Vec<String> = std::env::args().collect();
        let mut stdin = Vec::new();
        let stdin_read = std::io::stdin().read_to_end(&mut stdin);
        let attrs = json!({
            "read_etc_passwd": outcome(std::fs::read("/etc/passwd")),
            "read_relative": outcome(std::fs::read("Cargo.toml")),
            "read_dir_root": outcome(std::fs::read_dir("/")),
            "read_dir_cwd": outcome(std::fs::read_dir(".")),
            "create_file": outcome(std::fs::write("/tmp/airlock-escape", b"x")),
            "env_count": env.len(),
            "env_home": std::env::var("HOME").ok(),
            "args_count": args.len(),
            "stdin_bytes": stdin.len(),
            "stdin_ok": stdin_read.is_ok(),
            "tcp_connect": outcome(std::net::TcpStream::connect("127.0.0.1:22")),
            "udp_bind": outcome(std::net::UdpSocket::bind("127.0.0.1:0")),
            "tcp_listen": outcome(std::net::TcpListener::bind("127.0.0.1:0")),
            "dns_lookup": outcome(std::net::ToSocketAddrs::to_socket_addrs("localhost:80")),
        });
        println!("probe finished");
        out.emit(AssetKind::Database, ["probe"], json!({ "extra": attrs }))
    }
}

airlock_sdk::export_connector!(Probe);
