//! Whether two repository selectors can select the same repository, decided
//! exactly: each glob is a regular language, so is the set of valid
//! repository names, and two globs overlap when the intersection of the
//! three is not empty. The search walks the product of their DFAs breadth
//! first over the bytes a repository name may hold, so the witness it
//! returns is a shortest name both select, which is what an operator needs
//! to see in the error.

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};

/// The distribution spec's repository name grammar (see `names.rs`).
const NAME_GRAMMAR: &str =
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$";

/// Every byte a repository name may hold, in the order witnesses prefer.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789/-._";

/// Product states explored before giving up. Selectors are at most 256
/// bytes and glob DFAs stay small, so this is far above what real
/// selectors reach; past it the answer is "cannot tell", never "disjoint".
const MAX_STATES: usize = 200_000;

/// Size limit of one compiled DFA, in bytes.
const MAX_DFA_BYTES: usize = 4 << 20;

pub(crate) type Dfa = dense::DFA<Vec<u32>>;

/// Compiles an anchored regex (a glob's or the name grammar) to a DFA that
/// reports every match, so no match is pruned by leftmost-first priority.
pub(crate) fn compile(pattern: &str) -> Result<Dfa, String> {
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .match_kind(MatchKind::All)
                .dfa_size_limit(Some(MAX_DFA_BYTES))
                .determinize_size_limit(Some(MAX_DFA_BYTES)),
        )
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(pattern)
        .map_err(|e| format!("selector too complex to compare: {e}"))
}

/// A shortest valid repository name that both `a` and `b` accept, `None`
/// when there is none, or an error when the search is too large to finish.
pub(crate) fn witness(a: &Dfa, b: &Dfa) -> Result<Option<String>, String> {
    static NAMES: LazyLock<Result<Dfa, String>> = LazyLock::new(|| compile(NAME_GRAMMAR));
    let names = NAMES.as_ref().map_err(Clone::clone)?;
    let dfas = [a, b, names];
    let config = start::Config::new().anchored(Anchored::Yes);
    let mut first = [StateID::ZERO; 3];
    for (slot, dfa) in first.iter_mut().zip(dfas) {
        *slot = dfa.start_state(&config).map_err(|e| format!("selector cannot start: {e}"))?;
    }
    // Each reached product state remembers its parent and the byte that led
    // to it, which spells the witness back once an accepting state is found.
    let mut seen: HashMap<[StateID; 3], Option<([StateID; 3], u8)>> = HashMap::new();
    seen.insert(first, None);
    let mut queue = VecDeque::from([first]);
    while let Some(state) = queue.pop_front() {
        if dfas.iter().zip(state).all(|(dfa, s)| dfa.is_match_state(dfa.next_eoi_state(s))) {
            return Ok(Some(spell(&seen, state)));
        }
        for &byte in ALPHABET {
            let mut next = [StateID::ZERO; 3];
            let mut alive = true;
            for ((slot, dfa), s) in next.iter_mut().zip(dfas).zip(state) {
                *slot = dfa.next_state(s, byte);
                alive &= !dfa.is_dead_state(*slot) && !dfa.is_quit_state(*slot);
            }
            if !alive || seen.contains_key(&next) {
                continue;
            }
            if seen.len() >= MAX_STATES {
                return Err("selectors too complex to compare".into());
            }
            seen.insert(next, Some((state, byte)));
            queue.push_back(next);
        }
    }
    Ok(None)
}

fn spell(
    seen: &HashMap<[StateID; 3], Option<([StateID; 3], u8)>>,
    mut state: [StateID; 3],
) -> String {
    let mut bytes = Vec::new();
    while let Some(Some((parent, byte))) = seen.get(&state) {
        bytes.push(*byte);
        state = *parent;
    }
    bytes.reverse();
    // Every byte comes from ALPHABET, which is ASCII.
    String::from_utf8_lossy(&bytes).into_owned()
}
