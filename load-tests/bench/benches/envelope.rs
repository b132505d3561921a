//! Envelope encode/decode: the per-event serialisation global pays to route
//! an event and every shard consumer pays to read it.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use cellbank_bench::stream;
use cellbank_shared::contract::RoutedEvent;
use cellbank_shared::envelope::Envelope;
use cellbank_shared::ids::{CustomerId, Epoch};

fn envelope(c: &mut Criterion) {
    let env = stream::deposit(CustomerId::new(), Epoch(1), "0100000042", 42);
    let bytes = env.encode();
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| b.iter(|| black_box(&env).encode()));
    g.bench_function("decode", |b| {
        b.iter(|| Envelope::decode(black_box(&bytes)).expect("decodes"))
    });
    g.bench_function("decode_payload", |b| {
        b.iter(|| {
            let e = Envelope::decode(black_box(&bytes)).expect("decodes");
            serde_json::from_value::<RoutedEvent>(e.payload).expect("routed event")
        })
    });
    g.bench_function("headers_and_key", |b| {
        b.iter(|| {
            let e = black_box(&env);
            (e.headers(), e.key())
        })
    });
    g.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
