use super::*;
use proptest::prelude::*;

fn sample() -> (Map<String, Value>, Vec<f32>, Vec<i64>) {
    let mut h = Map::new();
    h.insert("kind".into(), "flat".into());
    h.insert("dim".into(), 3.into());
    let v: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
    let ids: Vec<i64> = vec![4, 7, 9, 11];
    (h, v, ids)
}

fn sample_bytes() -> Vec<u8> {
    let (h, v, ids) = sample();
    let mut vs = SectionData::of("vectors", &v);
    vs.shape = vec![4, 3];
    encode(&h, &[vs, SectionData::of("ids", &ids)]).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("knnkit-io-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn round_trip_mapped_and_read() {
    let dir = tmp("rt");
    let path = dir.join("a.knn");
    let (h, v, ids) = sample();
    let mut vs = SectionData::of("vectors", &v);
    vs.shape = vec![4, 3];
    write(&path, &h, &[vs, SectionData::of("ids", &ids)]).unwrap();
    for mmap in [true, false] {
        let f = IndexFile::open(&path, mmap).unwrap();
        assert_eq!(f.is_mapped(), mmap);
        assert_eq!(f.header()["kind"], "flat");
        assert_eq!(f.section("vectors").unwrap().shape, vec![4, 3]);
        assert_eq!(f.array::<f32>("vectors").unwrap(), v);
        assert_eq!(&f.store::<i64>("ids").unwrap()[..], &ids[..]);
        assert!(f.section("vectors").unwrap().offset.is_multiple_of(ALIGN));
        assert!(matches!(f.array::<f64>("vectors"), Err(Error::Corrupt(_))));
        assert!(matches!(f.section("nope"), Err(Error::Corrupt(_))));
    }
    // no temporary file is left behind
    let names: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(names.len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_sections_and_no_sections() {
    let (h, _, _) = sample();
    let none: [f32; 0] = [];
    let mut vs = SectionData::of("vectors", &none);
    vs.shape = vec![0, 3];
    let f = IndexFile::from_bytes("x", encode(&h, &[vs]).unwrap()).unwrap();
    assert_eq!(f.array::<f32>("vectors").unwrap(), Vec::<f32>::new());
    let f = IndexFile::from_bytes("x", encode(&h, &[]).unwrap()).unwrap();
    assert!(f.sections().is_empty());
}

#[test]
fn stale_temp_of_a_dead_writer_is_removed() {
    let dir = tmp("stale");
    let path = dir.join("a.knn");
    // pid 0 is never a live user process in /proc's numbering of writers
    let stale = dir.join(".a.knn.4000000000.0-1.knnkit-tmp");
    fs::write(&stale, b"junk").unwrap();
    write_atomic(&path, b"hello").unwrap();
    assert!(!stale.exists());
    assert_eq!(fs::read(&path).unwrap(), b"hello");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_writers_never_share_a_temp_file() {
    let dir = tmp("conc");
    let path = dir.join("a.knn");
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let path = &path;
            s.spawn(move || {
                for _ in 0..25 {
                    write_atomic(path, &[t; 4096]).unwrap();
                }
            });
        }
    });
    let got = fs::read(&path).unwrap();
    assert!(got.len() == 4096 && got.iter().all(|&b| b == got[0]));
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_file_is_an_io_error() {
    let e = IndexFile::open(Path::new("/nonexistent/knnkit/x.knn"), true).unwrap_err();
    assert!(matches!(
        e,
        Error::Io {
            kind: std::io::ErrorKind::NotFound,
            ..
        }
    ));
}

/// Rewrites the header of a valid file with `edit` applied, checksum recomputed.
fn forge(edit: impl Fn(&mut Map<String, Value>)) -> Vec<u8> {
    let raw = sample_bytes();
    let hlen = u32::from_le_bytes(raw[12..16].try_into().unwrap()) as usize;
    let Value::Object(mut h) = serde_json::from_slice(&raw[PREFIX..PREFIX + hlen]).unwrap() else {
        unreachable!()
    };
    edit(&mut h);
    let hb = serde_json::to_vec(&Value::Object(h)).unwrap();
    let mut out = raw[..8].to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(hb.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&hb).to_le_bytes());
    out.extend_from_slice(&hb);
    out.extend_from_slice(&raw[PREFIX + hlen..]);
    out
}

#[test]
fn forged_section_tables_are_corrupt() {
    let section = |f: &dyn Fn(&mut Map<String, Value>)| {
        forge(|h| {
            let Value::Array(t) = h.get_mut("sections").unwrap() else {
                unreachable!()
            };
            let Value::Object(s) = &mut t[0] else {
                unreachable!()
            };
            f(s);
        })
    };
    let cases: Vec<Vec<u8>> = vec![
        section(&|s| {
            s.insert("shape".into(), serde_json::json!([u64::MAX, 8]));
        }),
        section(&|s| {
            s.insert("shape".into(), serde_json::json!([-1, 3]));
        }),
        section(&|s| {
            s.insert("offset".into(), serde_json::json!(u64::MAX));
        }),
        section(&|s| {
            s.insert("offset".into(), serde_json::json!(1));
        }),
        section(&|s| {
            s.insert("dtype".into(), serde_json::json!("complex128"));
        }),
        section(&|s| {
            s.insert("name".into(), serde_json::json!("ids"));
        }),
        section(&|s| {
            s.insert("crc32".into(), serde_json::json!("x"));
        }),
        forge(|h| {
            h.insert("sections".into(), serde_json::json!({"a": 1}));
        }),
        forge(|h| {
            h.remove("sections");
        }),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        let r = IndexFile::from_bytes("f", c);
        assert!(matches!(r, Err(Error::Corrupt(_))), "case {i}: {r:?}");
    }
    assert!(IndexFile::from_bytes("f", forge(|_| {})).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The loader never panics and never accepts a damaged file.
    #[test]
    fn mutated_files_are_rejected_or_valid(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
        truncate in any::<bool>(),
    ) {
        let mut raw = sample_bytes();
        let orig = raw.clone();
        for (at, x) in flips {
            let at = at % raw.len();
            raw[at] ^= x;
        }
        if truncate {
            raw.truncate(cut % (raw.len() + 1));
        }
        let same = raw == orig;
        match IndexFile::from_bytes("m", raw) {
            Ok(f) => {
                // only changes the checksums cannot see (none for a CRC'd single-byte edit)
                // or padding bytes may pass; what loads is self-consistent
                for s in f.sections() {
                    prop_assert!(s.offset + s.length <= orig.len());
                }
            }
            Err(e) => {
                prop_assert!(!same, "a valid file was rejected: {e}");
                prop_assert!(matches!(e, Error::Corrupt(_)));
            }
        }
    }
}
