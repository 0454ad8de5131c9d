//! A small HTTP/1.1 file server on 127.0.0.1 for artifact tests (a test double for release
//! hosts and mirrors, which this machine cannot reach). It serves byte bodies by path, honours
//! `Range: bytes=N-` (206 / 416), can be told to cut the connection after K body bytes of the
//! next response to a path, and logs every request with its Range header and bytes sent.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
    pub body_bytes_sent: usize,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    cut_next: HashMap<String, usize>,
    log: Vec<Logged>,
    delay: Option<std::time::Duration>,
    active: usize,
    max_active: usize,
}

/// The running server; it stops when the test's runtime ends.
#[derive(Clone)]
pub struct TestServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    {
                        let mut s = st.lock().unwrap();
                        s.active += 1;
                        s.max_active = s.max_active.max(s.active);
                    }
                    let _ = handle(sock, st.clone()).await;
                    st.lock().unwrap().active -= 1;
                });
            }
        });
        TestServer { addr, state }
    }

    /// Base URL, e.g. `http://127.0.0.1:4321`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn serve(&self, path: &str, body: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), body);
    }

    /// The next response for `path` closes the connection after `after` body bytes.
    pub fn cut_next(&self, path: &str, after: usize) {
        self.state
            .lock()
            .unwrap()
            .cut_next
            .insert(path.to_string(), after);
    }

    /// Hold every response this long before its body (makes concurrent downloads overlap).
    pub fn delay_responses(&self, d: std::time::Duration) {
        self.state.lock().unwrap().delay = Some(d);
    }

    /// The most requests that were being answered at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.state.lock().unwrap().max_active
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn log_for(&self, path: &str) -> Vec<Logged> {
        self.log().into_iter().filter(|l| l.path == path).collect()
    }
}

async fn handle(mut sock: TcpStream, st: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());

    let (body, cut, delay) = {
        let mut s = st.lock().unwrap();
        let cut = s.cut_next.remove(&path);
        (s.files.get(&path).cloned(), cut, s.delay)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let Some(body) = body else {
        sock.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        st.lock().unwrap().log.push(Logged {
            path,
            range,
            status: 404,
            body_bytes_sent: 0,
        });
        return Ok(());
    };
    let len = body.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse::<usize>().ok());
    let (status, header, slice) = match start {
        Some(s) if s >= len => (
            416,
            format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
            &body[0..0],
        ),
        Some(s) => (
            206,
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - s
            ),
            &body[s..],
        ),
        None => (
            200,
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"),
            &body[..],
        ),
    };
    sock.write_all(header.as_bytes()).await?;
    let send = cut.map(|c| c.min(slice.len())).unwrap_or(slice.len());
    sock.write_all(&slice[..send]).await?;
    sock.flush().await?;
    st.lock().unwrap().log.push(Logged {
        path,
        range,
        status,
        body_bytes_sent: send,
    });
    // Dropping the socket closes it; with a cut that is mid-body, as a dropped link would be.
    Ok(())
}
