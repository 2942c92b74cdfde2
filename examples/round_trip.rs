//! Round-trip floors for PERF.md: one request at a time, no load, p50/p90/p99 of N round trips.
//!
//! ```text
//! cargo run --release --example round_trip -- echo-std                 # blocking sockets, 1 KiB echo
//! cargo run --release --example round_trip -- echo-glommio SERVER_CPU CLIENT_CPU
//! cargo run --release --example round_trip -- produce HOST:PORT TOPIC CLIENT_CPU   # one 1 KiB record per request, acks 1
//! ```
//!
//! `produce` needs a running broker and an existing topic; it waits 300 µs between requests
//! unless `RINGMQ_RTT_BACK_TO_BACK` is set.

use std::error::Error;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::{LocalExecutorBuilder, Placement};
use ringmq::client::{AccumulatorConfig, Acks, ConnectionConfig, Producer, ProducerConfig};

const ROUND_TRIPS: usize = 3_000;
const MESSAGE_BYTES: usize = 1024;
const PAUSE: Duration = Duration::from_micros(300);

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().ok_or_else(|| format!("missing argument {i}; see the file's doc"));
    let samples = match arg(0)?.as_str() {
        "echo-std" => echo_std()?,
        "echo-glommio" => echo_glommio(arg(1)?.parse()?, arg(2)?.parse()?)?,
        "produce" => produce(arg(1)?.parse()?, arg(2)?, arg(3)?.parse()?)?,
        other => return Err(format!("unknown mode {other}: echo-std, echo-glommio or produce").into()),
    };
    report(samples);
    Ok(())
}

fn report(mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
        samples.get(index).copied().unwrap_or_default()
    };
    println!("round trip p50 {:?} p90 {:?} p99 {:?} ({} samples)", at(0.5), at(0.9), at(0.99), samples.len());
}

fn echo_std() -> Result<Vec<Duration>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut buffer = vec![0u8; MESSAGE_BYTES];
        for _ in 0..ROUND_TRIPS {
            stream.read_exact(&mut buffer)?;
            stream.write_all(&buffer)?;
        }
        Ok(())
    });
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    let mut buffer = vec![1u8; MESSAGE_BYTES];
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        stream.write_all(&buffer)?;
        stream.read_exact(&mut buffer)?;
        samples.push(start.elapsed());
        std::thread::sleep(PAUSE);
    }
    server.join().map_err(|_| "the echo server panicked")??;
    Ok(samples)
}

fn echo_glommio(server_cpu: usize, client_cpu: usize) -> Result<Vec<Duration>> {
    let (address_sender, address_receiver) = std::sync::mpsc::channel();
    let server = LocalExecutorBuilder::new(Placement::Fixed(server_cpu)).spawn(move || async move {
        let serve = async {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0")?;
            address_sender.send(listener.local_addr()?).map_err(|_| "the client went away")?;
            let mut stream = listener.accept().await?;
            stream.set_nodelay(true)?;
            let mut buffer = vec![0u8; MESSAGE_BYTES];
            for _ in 0..ROUND_TRIPS {
                stream.read_exact(&mut buffer).await?;
                stream.write_all(&buffer).await?;
            }
            Ok::<(), Box<dyn Error>>(())
        };
        serve.await.map_err(|error| error.to_string())
    })?;
    let address = address_receiver.recv()?;
    let samples = LocalExecutorBuilder::new(Placement::Fixed(client_cpu)).make()?.run(async move {
        let mut stream = glommio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let mut buffer = vec![1u8; MESSAGE_BYTES];
        let mut samples = Vec::with_capacity(ROUND_TRIPS);
        for _ in 0..ROUND_TRIPS {
            let start = Instant::now();
            stream.write_all(&buffer).await?;
            stream.read_exact(&mut buffer).await?;
            samples.push(start.elapsed());
            glommio::timer::sleep(PAUSE).await;
        }
        Ok::<_, Box<dyn Error>>(samples)
    })?;
    server.join().map_err(|error| format!("the echo server failed: {error}"))??;
    Ok(samples)
}

fn produce(address: std::net::SocketAddr, topic: String, client_cpu: usize) -> Result<Vec<Duration>> {
    let back_to_back = std::env::var_os("RINGMQ_RTT_BACK_TO_BACK").is_some();
    LocalExecutorBuilder::new(Placement::Fixed(client_cpu)).make()?.run(async move {
        let connection = ringmq::runtime::open_connection(address, ConnectionConfig::default()).await?;
        let config = ProducerConfig {
            acks: Acks::Leader,
            batching: AccumulatorConfig { batch_bytes: 16 << 10, linger: Duration::ZERO },
            ..ProducerConfig::default()
        };
        let mut producer = Producer::new(connection, config);
        let value = Bytes::from(vec![7u8; MESSAGE_BYTES]);
        let mut samples = Vec::with_capacity(ROUND_TRIPS);
        for _ in 0..ROUND_TRIPS {
            let start = Instant::now();
            let delivery = producer.send(&topic, None, value.clone(), Vec::new()).await?;
            producer.flush().await?;
            delivery.await?;
            samples.push(start.elapsed());
            if !back_to_back {
                glommio::timer::sleep(PAUSE).await;
            }
        }
        Ok(samples)
    })
}
