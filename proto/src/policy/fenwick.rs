//! A Fenwick (binary indexed) tree over `u64` weights with slot allocation: set a slot's weight,
//! the total, and "which slot holds the prefix-sum point v" in O(log n). Weighted random policies
//! draw with it.

/// Weights by slot, with O(log n) update and search. Capacity is a power of two and doubles when
/// full (an O(n) rebuild, amortized O(1) per insert).
#[derive(Clone, Debug, Default)]
pub struct Fenwick {
    /// 1-based tree: `tree[i]` covers `(i - lowbit(i), i]`. `tree[0]` is unused.
    tree: Vec<u64>,
    /// The weight of each slot (0-based), kept to rebuild on growth and to compute deltas.
    values: Vec<u64>,
    /// Slots given back by [`Fenwick::release`], reused first.
    free: Vec<u32>,
    /// Slots handed out so far (the high-water mark).
    used: u32,
    total: u64,
}

impl Fenwick {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of slots the tree can hold without growing.
    pub fn capacity(&self) -> usize {
        self.values.len()
    }

    /// Hands out a slot with the given weight.
    pub fn allocate(&mut self, weight: u64) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.used as usize == self.values.len() {
                    self.grow();
                }
                self.used += 1;
                self.used - 1
            }
        };
        self.set(slot, weight);
        slot
    }

    /// Gives a slot back (its weight becomes 0).
    pub fn release(&mut self, slot: u32) {
        self.set(slot, 0);
        self.free.push(slot);
    }

    /// The weight of a slot.
    pub fn get(&self, slot: u32) -> u64 {
        self.values.get(slot as usize).copied().unwrap_or(0)
    }

    /// Sets a slot's weight. A slot outside the capacity is ignored.
    pub fn set(&mut self, slot: u32, weight: u64) {
        let Some(old) = self.values.get_mut(slot as usize) else {
            return;
        };
        let old_value = std::mem::replace(old, weight);
        if old_value == weight {
            return;
        }
        self.total = self.total - old_value + weight;
        let n = self.values.len();
        let mut i = slot as usize + 1;
        while i <= n {
            self.tree[i] = self.tree[i] - old_value + weight;
            i += i & i.wrapping_neg();
        }
    }

    /// The slot whose weight interval contains `point`, for `point < total()`: slot `s` covers
    /// `[sum of weights before s, that + weight(s))`. `None` when `point >= total()`.
    pub fn find(&self, point: u64) -> Option<u32> {
        if point >= self.total {
            return None;
        }
        let n = self.values.len();
        let mut pos = 0usize;
        let mut rest = point;
        let mut step = n.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= rest {
                pos = next;
                rest -= self.tree[next];
            }
            step >>= 1;
        }
        // pos = number of leading slots whose cumulative sum is <= point: the answer is slot pos.
        Some(pos as u32)
    }

    fn grow(&mut self) {
        let new_len = (self.values.len() * 2).max(8);
        self.values.resize(new_len, 0);
        // Rebuild in O(n).
        self.tree = vec![0; new_len + 1];
        for i in 1..=new_len {
            self.tree[i] += self.values[i - 1];
            let parent = i + (i & i.wrapping_neg());
            if parent <= new_len {
                self.tree[parent] += self.tree[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_matches_linear_scan() {
        let mut f = Fenwick::new();
        let weights = [3u64, 0, 5, 1, 0, 0, 7, 2, 9, 4, 1];
        let slots: Vec<u32> = weights.iter().map(|&w| f.allocate(w)).collect();
        assert_eq!(f.total(), weights.iter().sum::<u64>());
        for point in 0..f.total() {
            let mut acc = 0;
            let expect = weights
                .iter()
                .position(|&w| {
                    acc += w;
                    point < acc
                })
                .unwrap();
            assert_eq!(f.find(point), Some(slots[expect]), "point {point}");
        }
        assert_eq!(f.find(f.total()), None);
    }

    #[test]
    fn release_and_reuse() {
        let mut f = Fenwick::new();
        let a = f.allocate(10);
        let b = f.allocate(20);
        f.release(a);
        assert_eq!(f.total(), 20);
        assert_eq!(f.find(0), Some(b));
        let c = f.allocate(5);
        assert_eq!(c, a);
        assert_eq!(f.find(0), Some(c));
        assert_eq!(f.find(5), Some(b));
    }
}
