//! LBO (Pastor et al., Euro-Par 2014): DVMS's protocol over a locality-aware overlay. Each node
//! gets Vivaldi coordinates computed from the latencies it measures to a few random peers; an
//! event then grows its partition by the node nearest (in those coordinates) to the node that
//! started it, so that partitions, and the migrations they plan, stay within a site as long as
//! the site has room.
//!
//! Vivaldi (Dabek et al., SIGCOMM 2004) in two dimensions plus a height (the access link),
//! with the adaptive timestep: each round every node measures one random peer and moves its
//! coordinates along the error, weighted by the confidence of both.

use super::dvms::Overlay;
use super::World;
use vjob_instances::gen::Rng;

/// Vivaldi's constants: error and timestep weights, rounds, and how far a latency measure
/// may be off (a uniform jitter of up to this fraction).
const CE: f64 = 0.25;
const CC: f64 = 0.25;
/// Rounds of measures, each one request and its answer per node.
pub const ROUNDS: usize = 128;
const JITTER: f64 = 0.1;
/// Dimensions of the space (besides the height): enough for four sites all at the same
/// distance from one another.
const DIMS: usize = 3;

/// A node's coordinates: a point and a height (its access link), in seconds of round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Coord {
    x: [f64; DIMS],
    h: f64,
}

impl Coord {
    fn plane(&self, o: &Coord) -> f64 {
        self.x
            .iter()
            .zip(&o.x)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// The predicted round trip: the distance in the space plus both heights.
    pub fn distance(&self, o: &Coord) -> f64 {
        self.plane(o) + self.h + o.h
    }
}

/// The coordinates of every node of `w`, from latencies measured with `rng`.
pub fn vivaldi(w: &World, rng: &mut Rng) -> Vec<Coord> {
    let n = w.nodes.len();
    let mut c = vec![Coord::default(); n];
    let mut err = vec![1.0f64; n];
    for _ in 0..ROUNDS {
        for i in 0..n {
            let j = rng.below(n as u64) as usize;
            if j == i {
                continue;
            }
            let rtt = 2.0 * w.link(i as u32, j as u32).latency * (1.0 + JITTER * rng.unit());
            let dist = c[i].distance(&c[j]);
            let weight = err[i] / (err[i] + err[j]);
            let rel = (dist - rtt).abs() / rtt;
            err[i] = rel * CE * weight + err[i] * (1.0 - CE * weight);
            let step = CC * weight * (rtt - dist);
            // Along the unit vector from j to i, heights included (a random direction when
            // they coincide).
            let plane = c[i].plane(&c[j]);
            let mut dir = [0.0; DIMS];
            if plane < 1e-12 {
                for d in &mut dir {
                    *d = rng.unit() - 0.5;
                }
                let len = dir.iter().map(|d| d * d).sum::<f64>().sqrt().max(1e-12);
                dir.iter_mut().for_each(|d| *d /= len);
            } else {
                for (k, d) in dir.iter_mut().enumerate() {
                    *d = (c[i].x[k] - c[j].x[k]) / plane;
                }
            }
            let norm = plane + c[i].h + c[j].h;
            let hdir = if norm > 1e-12 { (c[i].h + c[j].h) / norm } else { 0.0 };
            for (k, d) in dir.iter().enumerate() {
                c[i].x[k] += step * d;
            }
            c[i].h = (c[i].h + step * hdir).max(0.0);
        }
    }
    c
}

/// The overlay: partitions grow by the nearest node to the one that started them.
pub struct Nearest {
    coords: Vec<Coord>,
}

impl Nearest {
    pub fn new(coords: Vec<Coord>) -> Nearest {
        Nearest { coords }
    }
}

impl Overlay for Nearest {
    fn next_out(&self, _w: &World, nodes: &[u32], _from: u32, outside: &dyn Fn(u32) -> bool) -> Option<u32> {
        let origin = self.coords[nodes[0] as usize];
        (0..self.coords.len() as u32).filter(|&m| outside(m)).min_by(|&a, &b| {
            let da = origin.distance(&self.coords[a as usize]);
            let db = origin.distance(&self.coords[b as usize]);
            da.total_cmp(&db).then(a.cmp(&b))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    #[test]
    fn vivaldi_puts_the_nodes_of_a_site_closer_to_each_other_than_to_other_sites() {
        let w = World::new(Scenario {
            nodes: 64,
            sites: 4,
            ..Scenario::default()
        });
        let c = vivaldi(&w, &mut Rng::new(3));
        let (mut same, mut other) = (Vec::new(), Vec::new());
        for i in 0..64 {
            for j in 0..64 {
                if i != j {
                    let d = c[i].distance(&c[j]);
                    match w.nodes[i].site == w.nodes[j].site {
                        true => same.push(d),
                        false => other.push(d),
                    }
                }
            }
        }
        let worst_same = same.iter().copied().fold(0.0, f64::max);
        let best_other = other.iter().copied().fold(f64::MAX, f64::min);
        assert!(
            worst_same < best_other,
            "{worst_same} within a site, {best_other} across"
        );
        let mean_other = other.iter().sum::<f64>() / other.len() as f64;
        assert!(
            (mean_other - 0.020).abs() < 0.005,
            "round trips across sites ~20 ms: {mean_other}"
        );
    }

    #[test]
    fn lbos_partitions_grow_within_a_site_first() {
        // Node 3, the last of site 0, must shed a VM of 225%: node 2 beside it has room, and so
        // has node 4, its ring neighbour, in site 1.
        let loads = [700, 700, 100, 900, 100, 700, 700, 700];
        let (mut w, mut q) = super::super::dvms::tests::fixed(&loads, 2);
        let mut ring = super::super::dvms::Dvms::new(super::super::dvms::Ring, 8);
        super::super::dvms::tests::drive(&mut w, &mut q, &mut ring, 3600.0);
        assert_eq!(
            (w.counters.solved, w.counters.inter_site_migrations),
            (1, 1),
            "DVMS goes next door"
        );

        let (mut w, mut q) = super::super::dvms::tests::fixed(&loads, 2);
        let coords = vivaldi(&w, &mut Rng::new(1));
        let mut lbo = super::super::dvms::Dvms::new(Nearest::new(coords), 8);
        super::super::dvms::tests::drive(&mut w, &mut q, &mut lbo, 3600.0);
        assert_eq!(
            (w.counters.solved, w.counters.inter_site_migrations),
            (1, 0),
            "LBO stays home"
        );
        assert!(w.counters.migrations >= 1 && !w.violated().any(|_| true));
    }
}
