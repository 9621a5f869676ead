//! Generated mutants: source-level operators applied at one place of a
//! chosen function of the label, namespace, region and CXL region code
//! ([`TARGETS`]), one line changed each. The operators: a relational
//! operator swapped (`<` and `<=`, `>` and `>=`, `==` and `!=`), an
//! arithmetic one (`+` and `-`), a condition negated, a call statement
//! removed, an integer constant off by one. Every place of every target
//! found in the tree is a candidate ([`sites`]); a seeded sample of them
//! is run ([`crate::seeded::sample`]), so that a nightly run fits its
//! budget and a seed repeats it.

use std::path::Path;

use super::{Mutant, Origin};
use crate::overlay::Change;

/// The functions mutated: where namespace labels, DPA and HPA allocation
/// and region assembly are decided.
pub const TARGETS: &[(&str, &str)] = &[
    ("drivers/nvdimm/label.c", "__pmem_label_update"),
    ("drivers/nvdimm/label.c", "nd_label_write_index"),
    ("drivers/nvdimm/label.c", "__nd_label_validate"),
    ("drivers/nvdimm/label.c", "nd_label_reserve_dpa"),
    ("drivers/nvdimm/label.c", "nd_label_active_count"),
    ("drivers/nvdimm/label.c", "nd_label_alloc_slot"),
    ("drivers/nvdimm/label.c", "nd_label_free_slot"),
    ("drivers/nvdimm/label.c", "nd_label_nfree"),
    ("drivers/nvdimm/label.c", "del_labels"),
    ("drivers/nvdimm/label.c", "init_labels"),
    ("drivers/nvdimm/label.c", "nd_label_data_init"),
    ("drivers/nvdimm/namespace_devs.c", "scan_labels"),
    ("drivers/nvdimm/namespace_devs.c", "create_namespace_pmem"),
    ("drivers/nvdimm/namespace_devs.c", "__size_store"),
    ("drivers/nvdimm/namespace_devs.c", "grow_dpa_allocation"),
    ("drivers/nvdimm/namespace_devs.c", "shrink_dpa_allocation"),
    (
        "drivers/nvdimm/namespace_devs.c",
        "nd_namespace_pmem_set_resource",
    ),
    ("drivers/nvdimm/namespace_devs.c", "namespace_update_uuid"),
    ("drivers/nvdimm/region_devs.c", "nd_region_available_dpa"),
    ("drivers/nvdimm/region_devs.c", "nd_region_allocatable_dpa"),
    ("drivers/nvdimm/dimm_devs.c", "nd_pmem_available_dpa"),
    ("drivers/nvdimm/dimm_devs.c", "nd_pmem_max_contiguous_dpa"),
    ("drivers/nvdimm/dimm_devs.c", "nvdimm_allocated_dpa"),
    ("drivers/cxl/core/region.c", "cxl_port_setup_targets"),
    ("drivers/cxl/core/region.c", "cxl_region_attach"),
    ("drivers/cxl/core/region.c", "alloc_hpa"),
    ("drivers/cxl/core/region.c", "interleave_ways_store"),
    ("drivers/cxl/core/region.c", "interleave_granularity_store"),
    ("drivers/cxl/core/region.c", "cxl_region_validate_position"),
    ("drivers/cxl/pmem.c", "cxl_pmem_set_config_data"),
    ("drivers/cxl/pmem.c", "cxl_pmem_get_config_data"),
];

/// One place a generated mutant changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub file: String,
    pub function: String,
    /// 1-based.
    pub line: usize,
    pub operator: &'static str,
    pub before: String,
    pub after: String,
}

/// Every site of every target found in the tree at `src` (a target the
/// tree lacks is left out).
pub fn sites(src: &Path, targets: &[(&str, &str)]) -> Vec<Site> {
    let mut out = Vec::new();
    for (file, function) in targets {
        let Ok(text) = std::fs::read_to_string(src.join(file)) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let Some((start, end)) = function_span(&lines, function) else {
            continue;
        };
        for (i, line) in lines.iter().enumerate().take(end).skip(start + 1) {
            for (operator, after) in line_mutations(line) {
                out.push(Site {
                    file: (*file).to_owned(),
                    function: (*function).to_owned(),
                    line: i + 1,
                    operator,
                    before: (*line).to_owned(),
                    after,
                });
            }
        }
    }
    out
}

/// The lines of `name`'s definition: from its signature's line to its
/// closing brace (a `}` alone at the start of a line).
pub fn function_span(lines: &[&str], name: &str) -> Option<(usize, usize)> {
    let call = format!("{name}(");
    let start = lines.iter().position(|l| {
        let top_level = !l.starts_with([' ', '\t', '#', '/', '*', '}']);
        let at = l.find(&call);
        let named = at.is_some_and(|i| {
            i == 0 || !l.as_bytes()[i - 1].is_ascii_alphanumeric() && l.as_bytes()[i - 1] != b'_'
        });
        top_level && named && !l.trim_end().ends_with(';')
    })?;
    let end = lines[start..].iter().position(|l| *l == "}")? + start;
    Some((start, end))
}

/// The mutations of one line of code: (operator, the line after).
pub fn line_mutations(line: &str) -> Vec<(&'static str, String)> {
    let code = line.trim_start();
    if code.is_empty()
        || code.starts_with(['*', '#'])
        || code.starts_with("/*")
        || code.starts_with("//")
        || line.contains('"')
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (from, to, operator) in [
        (" <= ", " < ", "relational"),
        (" < ", " <= ", "relational"),
        (" >= ", " > ", "relational"),
        (" > ", " >= ", "relational"),
        (" == ", " != ", "relational"),
        (" != ", " == ", "relational"),
        (" + ", " - ", "arithmetic"),
        (" - ", " + ", "arithmetic"),
    ] {
        for (at, _) in line.match_indices(from) {
            out.push((
                operator,
                format!("{}{to}{}", &line[..at], &line[at + from.len()..]),
            ));
        }
    }
    if let Some(negated) = negate(line) {
        out.push(("negated-condition", negated));
    }
    if is_call_statement(code) {
        let indent = &line[..line.len() - code.len()];
        out.push(("removed-call", format!("{indent};")));
    }
    out.extend(
        constants(line)
            .into_iter()
            .map(|c| ("constant-off-by-one", c)),
    );
    out
}

/// `if (COND)` as `if (!(COND))`, when the line holds the whole condition.
fn negate(line: &str) -> Option<String> {
    let at = line.find("if (")?;
    let open = at + 3;
    let mut depth = 0;
    for (i, c) in line[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let close = open + i;
                    let cond = &line[open + 1..close];
                    return Some(format!(
                        "{}(!({cond})){}",
                        &line[..open],
                        &line[close + 1..]
                    ));
                }
            }
            _ => {}
        }
    }
    None
}

/// `name(args);` alone on its line: a call whose value nothing takes.
fn is_call_statement(code: &str) -> bool {
    let Some(name_end) = code.find('(') else {
        return false;
    };
    let name = &code[..name_end];
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !["if", "for", "while", "switch", "return", "sizeof"].contains(&name)
        && code.ends_with(");")
}

/// The line with each standalone decimal constant (not in an identifier,
/// not a shift count) one higher.
fn constants(line: &str) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let word = &line[start..i];
        let joined =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let shift =
            line[..start].trim_end().ends_with("<<") || line[..start].trim_end().ends_with(">>");
        if let (false, false, Ok(n)) = (joined, shift, word.parse::<u64>()) {
            out.push(format!("{}{}{}", &line[..start], n + 1, &line[i..]));
        }
    }
    out
}

/// The mutant that plants `site`, its diff made from the tree's file.
pub fn mutant(src: &Path, site: &Site, index: usize) -> std::io::Result<Mutant> {
    let text = std::fs::read_to_string(src.join(&site.file))?;
    let lines: Vec<&str> = text.lines().collect();
    let at = site.line - 1;
    let first = at.saturating_sub(3);
    let last = (at + 3).min(lines.len() - 1);
    let mut hunk = format!(
        "--- a/{0}\n+++ b/{0}\n@@ -{1},{2} +{1},{2} @@\n",
        site.file,
        first + 1,
        last - first + 1
    );
    for (i, line) in lines.iter().enumerate().take(last + 1).skip(first) {
        if i == at {
            hunk.push_str(&format!("-{line}\n+{}\n", site.after));
        } else {
            hunk.push_str(&format!(" {line}\n"));
        }
    }
    let name = format!(
        "g{index:03}-{}-{}-{}",
        site.function.trim_start_matches('_'),
        site.line,
        site.operator
    );
    Ok(Mutant {
        name: name.clone(),
        class: site.operator.to_owned(),
        models: "generated".into(),
        expect: format!("`{}` becomes `{}`", site.before.trim(), site.after.trim()),
        origin: Origin::Generated {
            operator: site.operator.to_owned(),
            file: site.file.clone(),
            function: site.function.clone(),
            line: site.line,
        },
        change: Change::diff(&name, hunk),
        variants: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "\
static int nd_label_nfree(struct nvdimm_drvdata *ndd)
{
\tint n = 0;

\tif (n < ndd->nslot - 1)
\t\tput_label(ndd, n + 2);
\tdev_dbg(ndd->dev, \"x < y\");
\treturn n == 0 ? 1 << 3 : n;
}

int other(void);
";

    #[test]
    fn a_function_spans_its_signature_to_its_brace() {
        let lines: Vec<&str> = SOURCE.lines().collect();
        assert_eq!(function_span(&lines, "nd_label_nfree"), Some((0, 8)));
        assert_eq!(function_span(&lines, "other"), None, "a declaration");
        assert_eq!(function_span(&lines, "label_nfree"), None, "a whole name");
    }

    #[test]
    fn each_operator_changes_one_place() {
        let m = line_mutations("\tif (n < ndd->nslot - 1)");
        let after: Vec<(&str, &str)> = m.iter().map(|(o, a)| (*o, a.as_str())).collect();
        assert!(
            after.contains(&("relational", "\tif (n <= ndd->nslot - 1)")),
            "{after:?}"
        );
        assert!(after.contains(&("arithmetic", "\tif (n < ndd->nslot + 1)")));
        assert!(after.contains(&("negated-condition", "\tif (!(n < ndd->nslot - 1))")));
        assert!(after.contains(&("constant-off-by-one", "\tif (n < ndd->nslot - 2)")));
        let call = line_mutations("\t\tput_label(ndd, n + 2);");
        assert!(call
            .iter()
            .any(|(o, a)| *o == "removed-call" && a == "\t\t;"));
        assert!(
            line_mutations("\tdev_dbg(ndd->dev, \"x < y\");").is_empty(),
            "strings left alone"
        );
        let shift = line_mutations("\treturn n == 0 ? 1 << 3 : n;");
        assert!(
            !shift.iter().any(|(_, a)| a.contains("<< 4")),
            "shift counts left alone"
        );
    }

    #[test]
    fn a_generated_mutant_applies_to_the_tree_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("drivers/nvdimm")).unwrap();
        std::fs::write(dir.path().join("drivers/nvdimm/label.c"), SOURCE).unwrap();
        let sites = sites(dir.path(), &[("drivers/nvdimm/label.c", "nd_label_nfree")]);
        assert!(sites.len() >= 8, "{sites:?}");
        let m = mutant(dir.path(), &sites[0], 1).unwrap();
        m.change.apply(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("drivers/nvdimm/label.c")).unwrap();
        assert!(text.contains(&sites[0].after), "{text}");
    }
}
