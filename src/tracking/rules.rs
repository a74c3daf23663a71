//! Analytics rules on tracks, in the camera's pixels (what nvdsanalytics and Frigate offer):
//! zones (polygons; a track is in a zone when its box's bottom centre is), lines (a track crosses
//! when that point's path crosses the segment, with a direction) and per-label filters (area,
//! score). Pure geometry and per-track state: the daemon turns it into events and counts.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A polygon zone, Frigate's keys: `coordinates` is a list of `[x, y]` in camera pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    pub coordinates: Vec<[f32; 2]>,
    /// Labels the zone applies to; empty: all.
    #[serde(default)]
    pub objects: Vec<String>,
}

/// Which crossings of a line count. `forward`: from the left of the segment `points[0]` →
/// `points[1]` to its right, as drawn on the image (y down); a line drawn left to right counts
/// forward what crosses it downwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineDirection {
    #[default]
    Both,
    Forward,
    Backward,
}

/// The direction of one crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Crossed {
    Forward,
    Backward,
}

impl Crossed {
    pub fn as_str(self) -> &'static str {
        match self {
            Crossed::Forward => "forward",
            Crossed::Backward => "backward",
        }
    }
}

/// A counting line: two points in camera pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub name: String,
    pub points: [[f32; 2]; 2],
    #[serde(default)]
    pub direction: LineDirection,
    /// Labels the line counts; empty: all.
    #[serde(default)]
    pub objects: Vec<String>,
}

/// Frigate's per-label filters: box area in camera pixels, score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelFilter {
    pub min_area: f32,
    /// 0 = no upper bound.
    pub max_area: f32,
    pub min_score: f32,
}

impl Default for LabelFilter {
    fn default() -> Self {
        Self {
            min_area: 0.0,
            max_area: 0.0,
            min_score: 0.0,
        }
    }
}

/// One camera's rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub zones: Vec<Zone>,
    pub lines: Vec<Line>,
    /// Label name → filter.
    pub filters: BTreeMap<String, LabelFilter>,
}

/// A rule that cannot work, with the field to fix (`zone[0].coordinates`, ...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RuleError {
    pub field: String,
    pub reason: String,
}

fn finite(p: [f32; 2]) -> bool {
    p[0].is_finite() && p[1].is_finite()
}

fn applies(objects: &[String], label: &str) -> bool {
    objects.is_empty() || objects.iter().any(|o| o == label)
}

/// The point a track stands on: its box's bottom centre (Frigate's choice for zones).
pub fn foot_point(b: &[f32; 4]) -> [f32; 2] {
    [0.5 * (b[0] + b[2]), b[3]]
}

/// Even-odd ray casting; a point on an edge may fall either side.
pub fn inside(poly: &[[f32; 2]], p: [f32; 2]) -> bool {
    let mut inside = false;
    let mut j = poly.len().wrapping_sub(1);
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            if p[0] < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Which side of the directed line `a` → `b` the point is on: > 0 right (y down), < 0 left.
fn side(a: [f32; 2], b: [f32; 2], p: [f32; 2]) -> f32 {
    (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
}

/// The crossing of the segment `line` by the move `from` → `to`, if they cross: from one side
/// strictly to the other, within the segment. A point on the line is on neither side;
/// [`RuleState`] measures from the last point that was on one.
pub fn crossing(line: [[f32; 2]; 2], from: [f32; 2], to: [f32; 2]) -> Option<Crossed> {
    let [a, b] = line;
    let (s0, s1) = (side(a, b, from), side(a, b, to));
    if s0 == 0.0 || s1 == 0.0 || (s0 > 0.0) == (s1 > 0.0) {
        return None;
    }
    // The line's ends on the two sides of the move (or on it): the segments meet.
    if side(from, to, a) * side(from, to, b) > 0.0 {
        return None;
    }
    Some(if s1 > 0.0 {
        Crossed::Forward
    } else {
        Crossed::Backward
    })
}

/// A rules file (the GStreamer element's `rules` property): the keys of the daemon's camera
/// tables, `[[zone]]`, `[[line]]`, `[filters.<label>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RulesFile {
    zone: Vec<Zone>,
    line: Vec<Line>,
    filters: BTreeMap<String, LabelFilter>,
}

impl Rules {
    /// Read and check a rules file (TOML); the error names the file and the field.
    pub fn from_file(path: &std::path::Path) -> Result<Self, RuleError> {
        let file = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| RuleError {
            field: file.to_string(),
            reason: e.to_string(),
        })?;
        let de = toml::Deserializer::new(&text);
        let f: RulesFile = serde_path_to_error::deserialize(de).map_err(|e| RuleError {
            field: format!("{file}: {}", e.path()),
            reason: e.inner().message().to_string(),
        })?;
        let rules = Rules {
            zones: f.zone,
            lines: f.line,
            filters: f.filters,
        };
        rules.validate().map_err(|e| RuleError {
            field: format!("{file}: {}", e.field),
            reason: e.reason,
        })?;
        Ok(rules)
    }

    /// Names unique and non-empty, polygons of 3+ finite points, lines of two distinct points,
    /// filters with min ≤ max.
    pub fn validate(&self) -> Result<(), RuleError> {
        let bad = |field: String, reason: &str| RuleError {
            field,
            reason: reason.to_string(),
        };
        let mut names = std::collections::HashSet::new();
        for (i, z) in self.zones.iter().enumerate() {
            if z.name.is_empty() || z.name.contains(',') || !names.insert(z.name.as_str()) {
                return Err(bad(
                    format!("zone[{i}].name"),
                    "empty, used twice or with a comma",
                ));
            }
            if z.coordinates.len() < 3 || !z.coordinates.iter().all(|p| finite(*p)) {
                return Err(bad(
                    format!("zone[{i}].coordinates"),
                    "needs at least 3 finite [x, y] points in camera pixels",
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.lines.iter().enumerate() {
            if l.name.is_empty() || !names.insert(l.name.as_str()) {
                return Err(bad(format!("line[{i}].name"), "empty or used twice"));
            }
            let [a, b] = l.points;
            if !finite(a) || !finite(b) || a == b {
                return Err(bad(
                    format!("line[{i}].points"),
                    "needs two distinct finite [x, y] points in camera pixels",
                ));
            }
        }
        for (label, f) in &self.filters {
            let field = |k: &str| format!("filters.{label}.{k}");
            if !(f.min_area.is_finite() && f.min_area >= 0.0) {
                return Err(bad(field("min_area"), "must be a number >= 0"));
            }
            if !(f.max_area.is_finite() && f.max_area >= 0.0)
                || (f.max_area > 0.0 && f.max_area < f.min_area)
            {
                return Err(bad(field("max_area"), "must be 0 (none) or >= min_area"));
            }
            if !(0.0..=1.0).contains(&f.min_score) {
                return Err(bad(field("min_score"), "must be in [0, 1]"));
            }
        }
        Ok(())
    }

    /// Whether a track of `label` with this score and box passes its label's filter.
    pub fn passes(&self, label: &str, score: f32, b: &[f32; 4]) -> bool {
        let Some(f) = self.filters.get(label) else {
            return true;
        };
        let area = (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
        score >= f.min_score && area >= f.min_area && (f.max_area <= 0.0 || area <= f.max_area)
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty() && self.lines.is_empty() && self.filters.is_empty()
    }
}

/// What one observation of a track changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Zones the track is in now, in the rules' order.
    pub current_zones: Vec<String>,
    /// Every zone it has been in, first entry first.
    pub entered_zones: Vec<String>,
    /// Whether `current_zones` differs from the last observation.
    pub zones_changed: bool,
    /// Lines crossed since the last observation, with the direction.
    pub crossings: Vec<(String, Crossed)>,
}

#[derive(Debug, Clone, Default)]
struct TrackRules {
    /// Per line: the last point that was on one side of it (not on it).
    sides: Vec<Option<[f32; 2]>>,
    current: Vec<String>,
    entered: Vec<String>,
}

/// One stream's rule state: where each track stood and which zones it entered, and the
/// crossing counts by (line, label, direction).
#[derive(Debug, Clone, Default)]
pub struct RuleState {
    tracks: HashMap<u64, TrackRules>,
    pub counts: BTreeMap<(String, String, Crossed), u64>,
}

impl RuleState {
    /// A track of `label` seen at `box_xyxy` on this frame.
    pub fn observe(&mut self, rules: &Rules, id: u64, label: &str, b: &[f32; 4]) -> Observation {
        let p = foot_point(b);
        let t = self.tracks.entry(id).or_default();
        let current: Vec<String> = rules
            .zones
            .iter()
            .filter(|z| applies(&z.objects, label) && inside(&z.coordinates, p))
            .map(|z| z.name.clone())
            .collect();
        for z in &current {
            if !t.entered.contains(z) {
                t.entered.push(z.clone());
            }
        }
        let zones_changed = current != t.current;
        t.current = current;
        let mut crossings = Vec::new();
        if t.sides.len() != rules.lines.len() {
            t.sides = vec![None; rules.lines.len()];
        }
        for (i, l) in rules.lines.iter().enumerate() {
            if !applies(&l.objects, label) || side(l.points[0], l.points[1], p) == 0.0 {
                continue;
            }
            if let Some(dir) = t.sides[i].and_then(|from| crossing(l.points, from, p)) {
                let counted = match l.direction {
                    LineDirection::Both => true,
                    LineDirection::Forward => dir == Crossed::Forward,
                    LineDirection::Backward => dir == Crossed::Backward,
                };
                if counted {
                    *self
                        .counts
                        .entry((l.name.clone(), label.to_string(), dir))
                        .or_default() += 1;
                    crossings.push((l.name.clone(), dir));
                }
            }
            t.sides[i] = Some(p);
        }
        Observation {
            current_zones: t.current.clone(),
            entered_zones: t.entered.clone(),
            zones_changed,
            crossings,
        }
    }

    /// The zones of a track as last observed (empty when never observed).
    pub fn zones(&self, id: u64) -> (Vec<String>, Vec<String>) {
        self.tracks
            .get(&id)
            .map(|t| (t.current.clone(), t.entered.clone()))
            .unwrap_or_default()
    }

    /// A track ended: forget where it stood.
    pub fn forget(&mut self, id: u64) {
        self.tracks.remove(&id);
    }

    /// A stream restart: no track carries over (the counts do).
    pub fn reset(&mut self) {
        self.tracks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            zones: vec![Zone {
                name: "left".into(),
                coordinates: vec![[0.0, 0.0], [50.0, 0.0], [50.0, 100.0], [0.0, 100.0]],
                objects: Vec::new(),
            }],
            lines: vec![Line {
                name: "middle".into(),
                points: [[60.0, 0.0], [60.0, 100.0]],
                direction: LineDirection::Both,
                objects: vec!["person".into()],
            }],
            filters: [(
                "person".to_string(),
                LabelFilter {
                    min_area: 50.0,
                    max_area: 0.0,
                    min_score: 0.3,
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    /// A box whose bottom centre is at (x, y).
    fn at(x: f32, y: f32) -> [f32; 4] {
        [x - 5.0, y - 10.0, x + 5.0, y]
    }

    #[test]
    fn zones_enter_and_leave_by_the_foot_point() {
        let r = rules();
        let mut s = RuleState::default();
        let o = s.observe(&r, 1, "person", &at(20.0, 50.0));
        assert_eq!(o.current_zones, vec!["left"]);
        assert!(o.zones_changed);
        let o = s.observe(&r, 1, "person", &at(30.0, 50.0));
        assert!(!o.zones_changed);
        // The box overlaps the zone but its foot point is outside.
        let o = s.observe(&r, 1, "person", &[45.0, 40.0, 65.0, 50.0]);
        assert!(o.current_zones.is_empty() && o.zones_changed);
        assert_eq!(o.entered_zones, vec!["left"]);
        assert_eq!(s.zones(1), (Vec::new(), vec!["left".to_string()]));
        s.forget(1);
        assert_eq!(s.zones(1), (Vec::new(), Vec::new()));
    }

    #[test]
    fn lines_count_each_crossing_with_its_direction_and_labels() {
        let r = rules();
        let mut s = RuleState::default();
        // A vertical line drawn downwards: its right (y down) is the left of the image.
        s.observe(&r, 1, "person", &at(40.0, 50.0));
        let o = s.observe(&r, 1, "person", &at(80.0, 50.0));
        assert_eq!(o.crossings, vec![("middle".to_string(), Crossed::Backward)]);
        let o = s.observe(&r, 1, "person", &at(30.0, 60.0));
        assert_eq!(o.crossings, vec![("middle".to_string(), Crossed::Forward)]);
        // Not a person: the line ignores it. Beyond the segment's end: no crossing.
        s.observe(&r, 2, "dog", &at(40.0, 50.0));
        assert!(s
            .observe(&r, 2, "dog", &at(80.0, 50.0))
            .crossings
            .is_empty());
        s.observe(&r, 3, "person", &at(40.0, 150.0));
        assert!(s
            .observe(&r, 3, "person", &at(80.0, 150.0))
            .crossings
            .is_empty());
        let total: u64 = s.counts.values().sum();
        assert_eq!(total, 2);
        assert_eq!(
            s.counts[&("middle".to_string(), "person".to_string(), Crossed::Forward)],
            1
        );
    }

    #[test]
    fn a_rules_file_reads_the_camera_tables_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(
            &path,
            "[[zone]]\nname = \"a\"\ncoordinates = [[0, 0], [9, 0], [9, 9]]\n\
             [[line]]\nname = \"l\"\npoints = [[0, 5], [9, 5]]\ndirection = \"forward\"\n\
             [filters.person]\nmin_score = 0.4\n",
        )
        .unwrap();
        let r = Rules::from_file(&path).expect("reads");
        assert_eq!((r.zones.len(), r.lines.len()), (1, 1));
        assert_eq!(r.lines[0].direction, LineDirection::Forward);
        std::fs::write(&path, "[[zone]]\nname = \"a\"\ncorners = []\n").unwrap();
        let e = Rules::from_file(&path).unwrap_err();
        assert!(
            e.field.contains("rules.toml") && e.field.contains("zone"),
            "{e}"
        );
    }

    #[test]
    fn stopping_on_a_line_crosses_only_when_leaving_to_the_other_side() {
        let r = rules();
        let mut s = RuleState::default();
        // Right of the downward line (the image's left) → on it → back: no crossing.
        s.observe(&r, 1, "person", &at(40.0, 50.0));
        assert!(s
            .observe(&r, 1, "person", &at(60.0, 50.0))
            .crossings
            .is_empty());
        assert!(s
            .observe(&r, 1, "person", &at(40.0, 50.0))
            .crossings
            .is_empty());
        // ... on it → through: one crossing, measured from the last side.
        assert!(s
            .observe(&r, 1, "person", &at(60.0, 50.0))
            .crossings
            .is_empty());
        let o = s.observe(&r, 1, "person", &at(80.0, 50.0));
        assert_eq!(o.crossings, vec![("middle".to_string(), Crossed::Backward)]);
        // Zone names with a comma are refused (the element joins them with commas).
        let mut bad = r;
        bad.zones[0].name = "a,b".into();
        assert_eq!(bad.validate().unwrap_err().field, "zone[0].name");
    }

    #[test]
    fn filters_and_validation_name_the_field() {
        let r = rules();
        assert!(r.passes("person", 0.5, &[0.0, 0.0, 10.0, 10.0]));
        assert!(!r.passes("person", 0.2, &[0.0, 0.0, 10.0, 10.0]));
        assert!(!r.passes("person", 0.5, &[0.0, 0.0, 5.0, 5.0]));
        assert!(r.passes("dog", 0.0, &[0.0, 0.0, 1.0, 1.0]));
        assert_eq!(r.validate(), Ok(()));
        let mut bad = r.clone();
        bad.zones[0].coordinates.truncate(2);
        assert_eq!(bad.validate().unwrap_err().field, "zone[0].coordinates");
        let mut bad = r.clone();
        bad.lines[0].points[1] = bad.lines[0].points[0];
        assert_eq!(bad.validate().unwrap_err().field, "line[0].points");
        let mut bad = r;
        bad.filters.get_mut("person").unwrap().max_area = 10.0;
        assert_eq!(bad.validate().unwrap_err().field, "filters.person.max_area");
    }
}
