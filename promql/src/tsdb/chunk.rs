//! Gorilla-style sample compression (Pelkonen et al., VLDB 2015), as in
//! Prometheus' XOR chunks: timestamps as delta-of-delta in variable-width
//! buckets, values XORed with their predecessor and stored as the window of
//! meaningful bits. Regular scrapes of counters and gauges cost 1–2 bytes.

use crate::storage::WindowSummary;
use crate::value::is_stale;

/// Appends bits MSB-first to a byte vector.
#[derive(Default, Debug, Clone)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Number of bits used in the last byte (0 means the last byte is full or there is none).
    used: u8,
}

impl BitWriter {
    /// Bits written so far.
    fn bits(&self) -> usize {
        match self.used {
            0 => self.bytes.len() * 8,
            u => (self.bytes.len() - 1) * 8 + u as usize,
        }
    }

    /// Starts a new byte, growing by small steps: a chunk's final size is
    /// unknown and doubling would leave up to half of the head unused.
    fn push_byte(&mut self) {
        if self.bytes.len() == self.bytes.capacity() {
            self.bytes.reserve_exact(32);
        }
        self.bytes.push(0);
    }

    fn write_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.push_byte();
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    /// Writes the low `n` bits of `v` (n ≤ 64), most significant first.
    fn write_bits(&mut self, v: u64, mut n: u8) {
        while n > 0 {
            if self.used == 0 {
                self.push_byte();
            }
            let free = 8 - self.used;
            let take = free.min(n);
            let shift = n - take;
            let chunk = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= chunk << (free - take);
            self.used = (self.used + take) % 8;
            n -= take;
        }
    }
}

/// Delta-of-delta buckets: (prefix bits, prefix length, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

fn fits(dod: i64, bits: u8) -> bool {
    let lim = 1i64 << (bits - 1);
    -lim < dod && dod <= lim
}

/// Samples per chunk before it is sealed. Larger chunks amortise the chunk
/// header; 300 at a 1 s scrape is five minutes.
pub const CHUNK_SAMPLES: u16 = 300;

/// Index of the sample a chunk keeps a decoding checkpoint before, so a
/// window starting in the second half does not decode the first.
const MID: u16 = CHUNK_SAMPLES / 2;

/// Indexes of the extra checkpoints the open (head) chunk keeps, so short
/// windows at its end decode little; sealed chunks keep only `MID`.
const QUARTERS: [u16; 2] = [MID / 2, MID + MID / 2];

/// Decoder state just before some sample: resume decoding there.
#[derive(Debug, Clone, Copy, Default)]
struct Checkpoint {
    /// Value bits of the previous sample.
    v: u64,
    /// Timestamp of the previous sample, as an offset from the chunk's first.
    t_off: u32,
    delta: i32,
    /// Bit offset of the sample; 0 when there is no checkpoint.
    bit: u16,
    leading: u8,
    trailing: u8,
}

/// The checkpoint before sample `MID`, plus the summary of samples `MID..`
/// (resets counted between those samples only).
#[derive(Debug, Clone, Copy, Default)]
struct Mid {
    cp: Checkpoint,
    reset_sum: f64,
    resets: u16,
    stale: u16,
}

/// Running facts about a chunk's samples that let a window covering all
/// (or the second half) of it be summarised without decoding it.
#[derive(Debug, Clone, Copy, Default)]
struct Facts {
    reset_sum: f64,
    resets: u16,
    /// Stale markers; summaries are only used when there are none.
    stale: u16,
    mid: Mid,
}

/// An appendable compressed chunk.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    w: BitWriter,
    count: u16,
    min_t: i64,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
    facts: Facts,
    quarters: [Checkpoint; 2],
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self {
            w: BitWriter::default(),
            count: 0,
            min_t: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: u8::MAX,
            trailing: 0,
            facts: Facts::default(),
            quarters: [Checkpoint::default(); 2],
        }
    }
}

impl ChunkWriter {
    /// Appends a sample; `t` must be greater than the previous one.
    pub fn append(&mut self, t: i64, v: f64) {
        let bits = v.to_bits();
        let f = &mut self.facts;
        let stale = is_stale(v);
        if self.count == MID || QUARTERS.contains(&self.count) {
            let bit = self.w.bits();
            if let (Ok(bit), Ok(delta), Ok(t_off)) = (
                u16::try_from(bit),
                i32::try_from(self.delta),
                u32::try_from(self.t - self.min_t),
            ) {
                let cp = Checkpoint {
                    v: self.v,
                    t_off,
                    delta,
                    bit,
                    leading: self.leading,
                    trailing: self.trailing,
                };
                if self.count == MID {
                    f.mid = Mid {
                        cp,
                        ..Mid::default()
                    };
                } else if let Some(i) = QUARTERS.iter().position(|q| *q == self.count) {
                    self.quarters[i] = cp;
                }
            }
        }
        if stale {
            f.stale += 1;
            if self.count >= MID {
                f.mid.stale += 1;
            }
        }
        if self.count > 0 && v < f64::from_bits(self.v) {
            let prev = f64::from_bits(self.v);
            f.reset_sum += prev;
            f.resets += 1;
            if self.count > MID {
                f.mid.reset_sum += prev;
                f.mid.resets += 1;
            }
        }
        match self.count {
            0 => {
                self.w.write_bits(t as u64, 64);
                self.w.write_bits(bits, 64);
                self.min_t = t;
            }
            _ => {
                let delta = t - self.t;
                let dod = delta - self.delta;
                self.write_dod(dod);
                self.write_xor(bits);
                self.delta = delta;
            }
        }
        self.t = t;
        self.v = bits;
        self.count += 1;
    }

    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.w.write_bit(false);
            return;
        }
        for (prefix, plen, vbits) in DOD_BUCKETS {
            if fits(dod, vbits) {
                self.w.write_bits(prefix, plen);
                self.w.write_bits(dod as u64 & ((1u64 << vbits) - 1), vbits);
                return;
            }
        }
        self.w.write_bits(0b1111, 4);
        self.w.write_bits(dod as u64, 64);
    }

    fn write_xor(&mut self, bits: u64) {
        let x = bits ^ self.v;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
            self.w.write_bit(false);
            let sig = 64 - self.leading - self.trailing;
            self.w.write_bits(x >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            self.w.write_bit(true);
            self.w.write_bits(u64::from(leading), 5);
            let sig = 64 - leading - trailing;
            // 64 significant bits do not fit in 6 bits; 0 stands for 64.
            self.w.write_bits(u64::from(sig) & 0x3f, 6);
            self.w.write_bits(x >> trailing, sig);
        }
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    pub fn max_t(&self) -> i64 {
        self.t
    }

    /// Bytes held, counting allocated capacity.
    pub fn bytes(&self) -> usize {
        self.w.bytes.capacity()
    }

    pub fn iter(&self) -> ChunkIter<'_> {
        self.view().iter()
    }

    fn view(&self) -> ChunkView<'_> {
        ChunkView {
            bytes: &self.w.bytes,
            count: self.count,
            min_t: self.min_t,
            max_t: self.t,
            last_v: f64::from_bits(self.v),
            facts: &self.facts,
            quarters: Some(&self.quarters),
        }
    }

    /// Adds the samples in `[mint, maxt]` (stale markers excluded) to `acc`.
    pub fn summarize(&self, mint: i64, maxt: i64, acc: &mut Option<WindowSummary>) {
        self.view().summarize(mint, maxt, acc);
    }

    /// Appends the samples in `[mint, maxt]` (stale markers included) to `out`.
    pub fn points(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        self.view().points(mint, maxt, out);
    }

    /// Whether a sample at `t` must go into a new chunk: this one is full,
    /// or `t` is too far from its start for the compact chunk header.
    pub fn is_full(&self, t: i64) -> bool {
        self.count >= CHUNK_SAMPLES || (self.count > 0 && t - self.min_t > i64::from(u32::MAX))
    }

    /// Freezes the chunk into its compact immutable form.
    pub fn seal(self) -> Chunk {
        Chunk {
            data: self.w.bytes.into_boxed_slice(),
            min_t: self.min_t,
            // is_full() keeps chunks within u32 milliseconds.
            max_off: u32::try_from(self.t - self.min_t).unwrap_or(u32::MAX),
            count: self.count,
            last_v: f64::from_bits(self.v),
            facts: self.facts,
        }
    }
}

/// An immutable compressed chunk.
#[derive(Debug, Clone)]
pub struct Chunk {
    data: Box<[u8]>,
    min_t: i64,
    max_off: u32,
    last_v: f64,
    count: u16,
    facts: Facts,
}

impl Chunk {
    pub fn iter(&self) -> ChunkIter<'_> {
        self.view().iter()
    }

    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    pub fn max_t(&self) -> i64 {
        self.min_t + i64::from(self.max_off)
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    fn view(&self) -> ChunkView<'_> {
        ChunkView {
            bytes: &self.data,
            count: self.count,
            min_t: self.min_t,
            max_t: self.max_t(),
            last_v: self.last_v,
            facts: &self.facts,
            quarters: None,
        }
    }

    /// Adds the samples in `[mint, maxt]` (stale markers excluded) to `acc`.
    pub fn summarize(&self, mint: i64, maxt: i64, acc: &mut Option<WindowSummary>) {
        self.view().summarize(mint, maxt, acc);
    }

    /// Appends the samples in `[mint, maxt]` (stale markers included) to `out`.
    pub fn points(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        self.view().points(mint, maxt, out);
    }

    /// Bytes held, including this header.
    pub fn bytes(&self) -> usize {
        self.data.len() + std::mem::size_of::<Self>()
    }
}

/// What summarising needs of a sealed or open chunk.
struct ChunkView<'a> {
    bytes: &'a [u8],
    count: u16,
    min_t: i64,
    max_t: i64,
    last_v: f64,
    facts: &'a Facts,
    quarters: Option<&'a [Checkpoint; 2]>,
}

fn push(acc: &mut Option<WindowSummary>, t: i64, v: f64) {
    if is_stale(v) {
        return;
    }
    match acc {
        Some(a) => a.push(t, v),
        None => *acc = Some(WindowSummary::new(t, v)),
    }
}

fn merge(acc: &mut Option<WindowSummary>, s: WindowSummary) {
    match acc {
        Some(a) => a.merge(&s),
        None => *acc = Some(s),
    }
}

impl<'a> ChunkView<'a> {
    fn iter(&self) -> ChunkIter<'a> {
        ChunkIter::new(self.bytes, self.count)
    }

    fn has_mid(&self) -> bool {
        self.count > MID && self.facts.mid.cp.bit != 0
    }

    /// Iterator over samples `idx..`, resuming at checkpoint `cp`.
    fn iter_from(&self, idx: u16, cp: &Checkpoint) -> ChunkIter<'a> {
        ChunkIter {
            bytes: self.bytes,
            bit: cp.bit as usize,
            left: self.count - idx,
            started: true,
            t: self.min_t + i64::from(cp.t_off),
            delta: i64::from(cp.delta),
            v: cp.v,
            leading: u32::from(cp.leading),
            trailing: u32::from(cp.trailing),
        }
    }

    /// The latest checkpoint whose preceding samples all lie before `mint`:
    /// (sample index, checkpoint), or `None` to decode from the start.
    fn start_for(&self, mint: i64) -> Option<(u16, Checkpoint)> {
        let mut best = None;
        let quarters = self.quarters.into_iter().flatten();
        let all = QUARTERS
            .iter()
            .zip(quarters)
            .map(|(i, cp)| (*i, *cp))
            .chain(std::iter::once((MID, self.facts.mid.cp)));
        for (idx, cp) in all {
            let usable = self.count > idx && cp.bit != 0;
            if usable
                && self.min_t + i64::from(cp.t_off) < mint
                && best.is_none_or(|(b, _)| idx > b)
            {
                best = Some((idx, cp));
            }
        }
        best
    }

    /// Appends the samples in `[mint, maxt]` to `out`, resuming at the
    /// latest checkpoint before `mint`.
    fn points(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        if self.count == 0 || self.max_t < mint || self.min_t > maxt {
            return;
        }
        let it = match self.start_for(mint) {
            Some((idx, cp)) => self.iter_from(idx, &cp),
            None => self.iter(),
        };
        out.reserve(it.size_hint().0);
        for (t, v) in it {
            if t > maxt {
                break;
            }
            if t >= mint {
                out.push((t, v));
            }
        }
    }

    fn summarize(&self, mint: i64, maxt: i64, acc: &mut Option<WindowSummary>) {
        if self.count == 0 || self.max_t < mint || self.min_t > maxt {
            return;
        }
        fn take_in(
            it: impl Iterator<Item = (i64, f64)>,
            mint: i64,
            maxt: i64,
            acc: &mut Option<WindowSummary>,
        ) {
            for (t, v) in it {
                if t > maxt {
                    break;
                }
                if t >= mint {
                    push(acc, t, v);
                }
            }
        }
        let covers_tail = self.max_t <= maxt;
        if covers_tail && self.min_t >= mint && self.facts.stale == 0 {
            // The whole chunk: no decoding beyond its first sample.
            let first = self.iter().next().unwrap_or((self.min_t, self.last_v));
            merge(
                acc,
                WindowSummary {
                    count: self.count as usize,
                    first,
                    last: (self.max_t, self.last_v),
                    reset_sum: self.facts.reset_sum,
                    resets: self.facts.resets as usize,
                },
            );
            return;
        }
        let start = self.start_for(mint);
        let (start_idx, it) = match &start {
            Some((idx, cp)) => (*idx, self.iter_from(*idx, cp)),
            None => (0, self.iter()),
        };
        let m = &self.facts.mid;
        if covers_tail && self.has_mid() && start_idx < MID && m.stale == 0 {
            // Decode up to the middle, summarise the second half.
            take_in(it.take((MID - start_idx) as usize), mint, maxt, acc);
            let first = self
                .iter_from(MID, &m.cp)
                .next()
                .unwrap_or((self.max_t, self.last_v));
            merge(
                acc,
                WindowSummary {
                    count: (self.count - MID) as usize,
                    first,
                    last: (self.max_t, self.last_v),
                    reset_sum: m.reset_sum,
                    resets: m.resets as usize,
                },
            );
            return;
        }
        take_in(it, mint, maxt, acc);
    }
}

/// 128 bits of the stream starting at bit `bit`, left-aligned (at least
/// 121 of them valid; bits past the end read as zero).
#[inline(always)]
fn window(bytes: &[u8], bit: usize) -> u128 {
    let i = bit >> 3;
    let raw = match bytes.get(i..i + 16) {
        Some(b) => u128::from_be_bytes(b.try_into().unwrap_or([0; 16])),
        None => {
            let mut w = [0u8; 16];
            let tail = bytes.get(i..).unwrap_or(&[]);
            w[..tail.len()].copy_from_slice(tail);
            u128::from_be_bytes(w)
        }
    };
    raw << (bit & 7)
}

/// A cursor over a 128-bit window: decoding a sample usually needs one
/// window load and register shifts only.
struct Bits {
    w: u128,
    used: u32,
}

impl Bits {
    /// Takes `n` bits, 1 ≤ n ≤ 64.
    #[inline(always)]
    fn take(&mut self, n: u32) -> u64 {
        let v = (self.w >> (128 - n)) as u64;
        self.w <<= n;
        self.used += n;
        v
    }

    #[inline(always)]
    fn bit(&mut self) -> bool {
        self.take(1) != 0
    }
}

/// Decodes a chunk's samples in order.
pub struct ChunkIter<'a> {
    bytes: &'a [u8],
    bit: usize,
    left: u16,
    started: bool,
    t: i64,
    delta: i64,
    v: u64,
    leading: u32,
    trailing: u32,
}

impl<'a> ChunkIter<'a> {
    fn new(bytes: &'a [u8], count: u16) -> Self {
        Self {
            bytes,
            bit: 0,
            left: count,
            started: false,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        }
    }

    #[inline(always)]
    fn read_dod(b: &mut Bits) -> i64 {
        if !b.bit() {
            return 0;
        }
        for (_, _, vbits) in DOD_BUCKETS {
            if !b.bit() {
                let vbits = u32::from(vbits);
                let raw = b.take(vbits) as i64;
                // The range is (-2^(n-1), 2^(n-1)]: the top value stays positive.
                let half = 1i64 << (vbits - 1);
                return if raw > half {
                    raw - (1i64 << vbits)
                } else {
                    raw
                };
            }
        }
        b.take(64) as i64
    }

    #[inline(always)]
    fn read_xor(&mut self, b: &mut Bits) {
        if !b.bit() {
            return;
        }
        if b.bit() {
            self.leading = b.take(5) as u32;
            let mut sig = b.take(6) as u32;
            if sig == 0 {
                sig = 64;
            }
            self.trailing = 64 - self.leading - sig;
        }
        let sig = 64 - self.leading - self.trailing;
        let x = b.take(sig);
        self.v ^= x << self.trailing;
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut b = Bits {
            w: window(self.bytes, self.bit),
            used: 0,
        };
        if !self.started {
            self.started = true;
            self.t = b.take(64) as i64;
            self.v = b.take(64 - 7);
            // 121 bits are guaranteed valid: reload for the last 7.
            self.bit += b.used as usize;
            b = Bits {
                w: window(self.bytes, self.bit),
                used: 0,
            };
            self.v = (self.v << 7) | b.take(7);
        } else {
            let dod = Self::read_dod(&mut b);
            if b.used > 121 - 77 {
                // A 64-bit delta-of-delta: reload before the value.
                self.bit += b.used as usize;
                b = Bits {
                    w: window(self.bytes, self.bit),
                    used: 0,
                };
            }
            self.delta += dod;
            self.t += self.delta;
            self.read_xor(&mut b);
        }
        self.bit += b.used as usize;
        Some((self.t, f64::from_bits(self.v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::STALE_NAN;

    fn roundtrip(samples: &[(i64, f64)]) -> ChunkWriter {
        let mut c = ChunkWriter::default();
        for &(t, v) in samples {
            c.append(t, v);
        }
        let got: Vec<_> = c.iter().collect();
        assert_eq!(got.len(), samples.len());
        for (g, w) in got.iter().zip(samples) {
            assert_eq!(g.0, w.0);
            assert_eq!(g.1.to_bits(), w.1.to_bits(), "value at t={}", w.0);
        }
        let sealed = c.clone().seal();
        assert_eq!(sealed.iter().count(), samples.len());
        c
    }

    #[test]
    fn irregular_timestamps_and_special_values_roundtrip() {
        let samples = vec![
            (-5_000, 1.0),
            (0, -0.0),
            (1, f64::NAN),
            (2, STALE_NAN),
            (10_000, f64::INFINITY),
            (10_001, f64::NEG_INFINITY),
            (1_000_000, 1e300),
            (1_000_000_000_000, 5e-300),
            (1_000_000_000_001, 42.5),
            (1_000_000_100_000, 42.5),
            (1_000_000_100_000 + 70_000, 43.0),
            (1_000_000_100_000 + 70_000 + 500_000, f64::MIN_POSITIVE),
            (i64::MAX / 2, f64::MAX),
        ];
        let c = roundtrip(&samples);
        assert!(is_stale(c.iter().nth(3).map(|s| s.1).unwrap_or(0.0)));
    }

    #[test]
    fn bucket_edges_and_random_values_roundtrip() {
        // Delta-of-delta values right at and around each bucket boundary.
        let dods: [i64; 16] = [
            0,
            1,
            -1,
            8191,
            8192,
            8193,
            -8191,
            -8192,
            65536,
            65537,
            -65536,
            524_288,
            524_289,
            -524_288,
            1 << 40,
            -(1 << 30),
        ];
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut samples = Vec::new();
        let (mut t, mut delta) = (1_000_000_000_000i64, 1000i64);
        for i in 0..240 {
            let dod = dods[(rnd() % dods.len() as u64) as usize];
            // Keep timestamps strictly increasing.
            if delta + dod > 0 {
                delta += dod;
            }
            t += delta;
            let v = match i % 4 {
                0 => f64::from_bits(rnd()),
                1 => (rnd() % 1000) as f64,
                2 => samples.last().map_or(0.0, |s: &(i64, f64)| s.1),
                _ => -((rnd() % 7) as f64) * 0.1,
            };
            samples.push((t, v));
        }
        roundtrip(&samples);
    }

    #[test]
    fn regular_counter_costs_under_two_bytes_per_sample() {
        let mut samples = Vec::new();
        let mut v = 1_000_000.0;
        for i in 0..CHUNK_SAMPLES {
            v += f64::from((i * 7) % 13);
            samples.push((1_700_000_000_000 + i64::from(i) * 1000, v));
        }
        let c = roundtrip(&samples);
        let per = c.iter().count();
        let bytes = c.seal().bytes();
        assert!(
            (bytes as f64) / (per as f64) < 2.0,
            "{bytes} bytes for {per} samples"
        );
    }

    #[test]
    fn constant_gauge_is_nearly_free() {
        let samples: Vec<_> = (0..i64::from(CHUNK_SAMPLES))
            .map(|i| (i * 15_000, 3.25))
            .collect();
        let c = roundtrip(&samples);
        let bytes = c.seal().bytes();
        // Two bits per sample plus the first sample and the chunk header.
        assert!(bytes < 200, "{bytes}");
    }
}
