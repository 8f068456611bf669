use super::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(42)
}

fn read_fraction(mix: OpMix, n: usize) -> f64 {
    let mut rng = rng();
    let reads = (0..n)
        .filter(|_| mix.next_op(&mut rng) == OpKind::Read)
        .count();
    reads as f64 / n as f64
}

#[test]
fn workload_mixes_within_tolerance() {
    let n = 100_000;
    for (w, want) in [(Workload::A, 0.5), (Workload::B, 0.95)] {
        let got = read_fraction(OpMix::new(w.read_ratio()), n);
        assert!((got - want).abs() < 0.01, "{w:?}: {got} reads, want {want}");
    }
    assert_eq!(read_fraction(OpMix::new(Workload::C.read_ratio()), n), 1.0);
    assert_eq!(
        read_fraction(OpMix::new(Workload::Write.read_ratio()), n),
        0.0
    );
    let got = read_fraction(OpMix::new(0.3), n);
    assert!((got - 0.3).abs() < 0.01, "{got}");
}

fn mix_of(w: Workload) -> OpMix {
    OpMix::with_non_read(w.read_ratio(), w.non_read())
}

#[test]
fn workload_d_reads_latest_and_inserts() {
    let mix = mix_of(Workload::D);
    let got = read_fraction(mix, 100_000);
    assert!((got - 0.95).abs() < 0.01, "D: {got} reads");
    assert_eq!(mix.non_read(), OpKind::Write);
    assert_eq!(Workload::D.distribution(), Some(Distribution::Latest));
    // Its writes insert new keys after the key space, one each.
    let chooser = KeyChooser::new(Distribution::Latest, 100);
    let mut rng = rng();
    let mut inserted = Vec::new();
    for _ in 0..20_000 {
        let kind = mix.next_op(&mut rng);
        let choice = chooser.choose(kind, &mut rng);
        match kind {
            OpKind::Write => {
                assert!(choice.insert && choice.index >= 100, "{choice:?}");
                inserted.push(choice.index);
                chooser.acknowledge(choice);
            }
            _ => assert!(!choice.insert),
        }
    }
    let n = inserted.len() as u64;
    assert!((800..1_200).contains(&n), "{n} inserts of 20000");
    assert_eq!(inserted, (100..100 + n).collect::<Vec<_>>());
    // Reads now centre on the newest key.
    let newest = 100 + n - 1;
    let reads: Vec<u64> = (0..10_000).map(|_| chooser.next_index(&mut rng)).collect();
    assert!(reads.iter().all(|&i| i <= newest));
    let near = reads.iter().filter(|&&i| i + 10 > newest).count();
    assert!(near > 3_000, "{near} of 10000 reads in the 10 newest keys");
}

#[test]
fn workload_f_is_half_reads_half_read_modify_writes() {
    let mix = mix_of(Workload::F);
    let mut rng = rng();
    let n = 100_000;
    let ops: Vec<OpKind> = (0..n).map(|_| mix.next_op(&mut rng)).collect();
    let reads = ops.iter().filter(|&&k| k == OpKind::Read).count() as f64;
    let rmw = ops
        .iter()
        .filter(|&&k| k == OpKind::ReadModifyWrite)
        .count() as f64;
    assert!((reads / n as f64 - 0.5).abs() < 0.01, "{reads} reads");
    assert_eq!(reads + rmw, n as f64, "F has no plain writes");
    assert_eq!(Workload::F.distribution(), None);
    // RMW picks an existing key, never an insert, even under latest.
    let chooser = KeyChooser::new(Distribution::Latest, 50);
    let c = chooser.choose(OpKind::ReadModifyWrite, &mut rng);
    assert!(!c.insert && c.index < 50, "{c:?}");
    // The other workloads keep plain writes.
    for w in [Workload::A, Workload::B, Workload::C, Workload::Write] {
        assert_eq!(w.non_read(), OpKind::Write, "{w:?}");
        assert_eq!(w.distribution(), None, "{w:?}");
    }
}

#[test]
fn mix_clamps_out_of_range_ratios() {
    assert_eq!(OpMix::new(1.7).read_ratio(), 1.0);
    assert_eq!(OpMix::new(-0.2).read_ratio(), 0.0);
    assert_eq!(OpMix::new(f64::NAN).read_ratio(), 0.0);
}

fn counts(chooser: &KeyChooser, samples: usize) -> Vec<u64> {
    let mut rng = rng();
    let mut counts = vec![0u64; chooser.keyspace() as usize];
    for _ in 0..samples {
        let i = chooser.next_index(&mut rng);
        counts[i as usize] += 1;
    }
    counts
}

#[test]
fn zipfian_is_skewed_and_uniform_is_not() {
    let keyspace = 1_000;
    let samples = 200_000;
    let zipf = counts(&KeyChooser::new(Distribution::Zipfian, keyspace), samples);
    let unif = counts(&KeyChooser::new(Distribution::Uniform, keyspace), samples);

    // Uniform expectation per key is 200; zipfian's hottest key gets
    // 1/zeta(1000, 0.99), about 13% of all draws.
    let expected_top = samples as f64 / zeta(keyspace, ZIPFIAN_THETA);
    let top = zipf[0] as f64;
    assert!(
        (top - expected_top).abs() / expected_top < 0.05,
        "top key {top}, expected about {expected_top}"
    );
    let unif_max = unif.iter().copied().max().unwrap_or(0) as f64;
    assert!(
        top > 50.0 * unif_max,
        "zipfian top {top} vs uniform max {unif_max}"
    );
    // Popularity falls with rank: rank 0 beats rank 1 beats rank 10.
    assert!(zipf[0] > zipf[1] && zipf[1] > zipf[10], "{:?}", &zipf[..11]);
    // The ten hottest keys take a large share; uniformly they take 1%.
    let top10: u64 = zipf[..10].iter().sum();
    assert!(top10 as f64 / samples as f64 > 0.3, "top10 {top10}");
    // Every uniform key is hit, roughly equally.
    assert!(unif.iter().all(|&c| c > 100 && c < 320), "uniform spread");
}

#[test]
fn zipfian_stays_in_range() {
    let mut rng = rng();
    for items in [1u64, 2, 3, 10, 100_000] {
        let z = Zipfian::new(items, ZIPFIAN_THETA);
        for _ in 0..10_000 {
            assert!(z.sample(&mut rng) < items);
        }
    }
    assert_eq!(Zipfian::new(0, ZIPFIAN_THETA).items(), 1);
}

#[test]
fn keys_and_values() {
    assert_eq!(key_for("bench:", 42), Bytes::from_static(b"bench:42"));
    let v = random_value(&mut rng(), 100);
    assert_eq!(v.len(), 100);
    assert!(v.iter().all(u8::is_ascii_alphanumeric));
    assert_eq!("Zipf".parse(), Ok(Distribution::Zipfian));
    assert_eq!("latest".parse(), Ok(Distribution::Latest));
    assert!("normal".parse::<Distribution>().is_err());
}
