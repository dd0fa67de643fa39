//! Software bills of materials: CycloneDX JSON 1.4–1.6 and SPDX JSON 2.2/2.3.
//!
//! CycloneDX (ECMA-424, JSON schema `bom-1.x.schema.json`): `components[]`, with nested
//! `components[]` flattened depth-first in file order. `metadata.component` (the thing the BOM
//! describes) is not a component of it and is left out. Licenses (`licenses[]`) are either
//! `{"license": {"id"}}`, `{"license": {"name"}}` or `{"expression"}`; each is kept as given.
//!
//! SPDX 2.3 (§7 Package information): every `packages[]` entry. Its license is `licenseConcluded`
//! (§7.13) when that asserts something, else `licenseDeclared` (§7.15); `NOASSERTION` and `NONE`
//! assert no usable license, so such a package lists none. The purl is the `externalRefs[]`
//! entry of `referenceType` `purl` (§7.21, Annex F).

use serde::Deserialize;

use crate::facts::{Component, SbomFacts, SbomFormat};
use crate::json::from_str;
use crate::{EvidenceKind, ParseError};

const CYCLONEDX_VERSIONS: [&str; 3] = ["1.4", "1.5", "1.6"];
const SPDX_VERSIONS: [&str; 2] = ["SPDX-2.2", "SPDX-2.3"];

#[derive(Deserialize)]
struct Bom {
    #[serde(rename = "bomFormat")]
    bom_format: String,
    #[serde(rename = "specVersion")]
    spec_version: String,
    #[serde(default)]
    components: Vec<CdxComponent>,
}

#[derive(Deserialize)]
struct CdxComponent {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    purl: Option<String>,
    #[serde(default)]
    licenses: Vec<CdxLicenseChoice>,
    #[serde(default)]
    components: Vec<CdxComponent>,
}

#[derive(Deserialize)]
struct CdxLicenseChoice {
    #[serde(default)]
    license: Option<CdxLicense>,
    #[serde(default)]
    expression: Option<String>,
}

#[derive(Deserialize)]
struct CdxLicense {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

pub(crate) fn parse_cyclonedx(kind: EvidenceKind, text: &str) -> Result<SbomFacts, ParseError> {
    let bom: Bom = from_str(kind, text)?;
    if bom.bom_format != "CycloneDX" {
        return Err(ParseError::new(kind, "bomFormat", format!("bomFormat is {:?}; a CycloneDX BOM says \"CycloneDX\"", bom.bom_format)));
    }
    if !CYCLONEDX_VERSIONS.contains(&bom.spec_version.as_str()) {
        return Err(ParseError::new(
            kind,
            "specVersion",
            format!("CycloneDX {} is not supported: use {}", bom.spec_version, CYCLONEDX_VERSIONS.join(", ")),
        ));
    }
    let mut components = Vec::new();
    // Depth-first, file order, without recursion: serde_json already bounds the nesting, but an
    // explicit stack keeps this function's stack use flat.
    let mut pending: Vec<(String, &CdxComponent)> =
        bom.components.iter().enumerate().map(|(i, c)| (format!("components[{i}]"), c)).rev().collect();
    while let Some((path, component)) = pending.pop() {
        let mut licenses = Vec::new();
        for (index, choice) in component.licenses.iter().enumerate() {
            let given = match (&choice.license, &choice.expression) {
                (Some(license), None) => license.id.as_ref().or(license.name.as_ref()),
                (None, Some(expression)) => Some(expression),
                _ => None,
            };
            match given.map(|text| text.trim()).filter(|text| !text.is_empty()) {
                Some(text) => licenses.push(text.to_string()),
                None => {
                    return Err(ParseError::new(
                        kind,
                        format!("{path}.licenses[{index}]"),
                        "a license entry needs exactly one of license.id, license.name or expression",
                    ))
                }
            }
        }
        components.push(Component {
            name: component.name.clone(),
            version: component.version.clone(),
            purl: component.purl.clone(),
            licenses,
        });
        pending.extend(component.components.iter().enumerate().map(|(i, c)| (format!("{path}.components[{i}]"), c)).rev());
    }
    let component_count = components.len() as u64;
    Ok(SbomFacts { format: SbomFormat::Cyclonedx, spec_version: bom.spec_version, components, component_count })
}

#[derive(Deserialize)]
struct SpdxDocument {
    #[serde(rename = "spdxVersion")]
    spdx_version: String,
    #[serde(default)]
    packages: Vec<SpdxPackage>,
}

#[derive(Deserialize)]
struct SpdxPackage {
    name: String,
    #[serde(default, rename = "versionInfo")]
    version_info: Option<String>,
    #[serde(default, rename = "licenseConcluded")]
    license_concluded: Option<String>,
    #[serde(default, rename = "licenseDeclared")]
    license_declared: Option<String>,
    #[serde(default, rename = "externalRefs")]
    external_refs: Vec<ExternalRef>,
}

#[derive(Deserialize)]
struct ExternalRef {
    #[serde(rename = "referenceType")]
    reference_type: String,
    #[serde(rename = "referenceLocator")]
    reference_locator: String,
}

pub(crate) fn parse_spdx(kind: EvidenceKind, text: &str) -> Result<SbomFacts, ParseError> {
    let document: SpdxDocument = from_str(kind, text)?;
    if !SPDX_VERSIONS.contains(&document.spdx_version.as_str()) {
        return Err(ParseError::new(
            kind,
            "spdxVersion",
            format!(
                "{} is not supported: use {} (SPDX 3 JSON-LD is a different format)",
                document.spdx_version,
                SPDX_VERSIONS.join(" or ")
            ),
        ));
    }
    let components: Vec<Component> = document
        .packages
        .into_iter()
        .map(|package| {
            let asserted = |license: &Option<String>| {
                license
                    .as_deref()
                    .map(str::trim)
                    .filter(|text| !text.is_empty() && *text != "NOASSERTION" && *text != "NONE")
                    .map(str::to_string)
            };
            let license = asserted(&package.license_concluded).or_else(|| asserted(&package.license_declared));
            Component {
                name: package.name,
                version: package.version_info,
                purl: package
                    .external_refs
                    .into_iter()
                    .find(|reference| reference.reference_type == "purl")
                    .map(|reference| reference.reference_locator),
                licenses: license.into_iter().collect(),
            }
        })
        .collect();
    let component_count = components.len() as u64;
    Ok(SbomFacts { format: SbomFormat::Spdx, spec_version: document.spdx_version, components, component_count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyclonedx_components_are_flattened_in_order_with_their_licenses() {
        let bom = r#"{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{"component":{"name":"app"}},"components":[
            {"type":"library","name":"a","version":"1","purl":"pkg:cargo/a@1","licenses":[{"license":{"id":"MIT"}},{"license":{"name":"Custom"}}],
             "components":[{"name":"a-sub","licenses":[{"expression":"Apache-2.0 OR MIT"}]}]},
            {"name":"b"}]}"#;
        let facts = parse_cyclonedx(EvidenceKind::Cyclonedx, bom).unwrap();
        let names: Vec<_> = facts.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "a-sub", "b"]);
        assert_eq!(facts.components[0].licenses, ["MIT", "Custom"]);
        assert_eq!(facts.components[1].licenses, ["Apache-2.0 OR MIT"]);
        assert_eq!(facts.components[0].purl.as_deref(), Some("pkg:cargo/a@1"));
        assert_eq!((facts.component_count, facts.spec_version.as_str()), (3, "1.6"));
    }

    #[test]
    fn spdx_prefers_the_concluded_license_and_drops_noassertion() {
        let doc = r#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","packages":[
            {"name":"a","versionInfo":"1.0","licenseConcluded":"MIT","licenseDeclared":"GPL-2.0-only",
             "externalRefs":[{"referenceCategory":"SECURITY","referenceType":"cpe23Type","referenceLocator":"cpe:2.3:a"},
                             {"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:npm/a@1.0"}]},
            {"name":"b","licenseConcluded":"NOASSERTION","licenseDeclared":"LicenseRef-Custom OR MIT"},
            {"name":"c","licenseConcluded":"NOASSERTION","licenseDeclared":"NONE"},
            {"name":"d"}]}"#;
        let facts = parse_spdx(EvidenceKind::Spdx, doc).unwrap();
        let licenses: Vec<_> = facts.components.iter().map(|c| c.licenses.clone()).collect();
        assert_eq!(licenses, [vec!["MIT".to_string()], vec!["LicenseRef-Custom OR MIT".to_string()], vec![], vec![]]);
        assert_eq!(facts.components[0].purl.as_deref(), Some("pkg:npm/a@1.0"));
        assert_eq!(facts.components[0].version.as_deref(), Some("1.0"));
    }

    #[test]
    fn malformed_sboms_name_the_json_path() {
        let cyclonedx = [
            (r#"{"bomFormat":"CycloneDX","specVersion":"1.3","components":[]}"#, "specVersion", "1.4, 1.5, 1.6"),
            (r#"{"bomFormat":"SPDX","specVersion":"1.6"}"#, "bomFormat", "CycloneDX"),
            (
                r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"name":"a","components":[{"version":"1"}]}]}"#,
                "components[0].components[0]",
                "missing field `name`",
            ),
            (
                r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"name":"a"},{"name":"b","licenses":[{"license":{}}]}]}"#,
                "components[1].licenses[0]",
                "exactly one",
            ),
            (r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":{}}"#, "components", "invalid type"),
        ];
        for (text, location, words) in cyclonedx {
            let error = parse_cyclonedx(EvidenceKind::Cyclonedx, text).unwrap_err();
            assert!(error.location.starts_with(location), "{}: {}", error.location, error.message);
            assert!(error.message.contains(words), "{}: {}", error.location, error.message);
        }
        let spdx = [
            (r#"{"spdxVersion":"SPDX-2.1","packages":[]}"#, "spdxVersion", "SPDX-2.2 or SPDX-2.3"),
            (
                r#"{"spdxVersion":"SPDX-2.3","packages":[{"name":"a"},{"name":"b","externalRefs":[{"referenceType":"purl"}]}]}"#,
                "packages[1].externalRefs[0]",
                "referenceLocator",
            ),
            (r#"{"packages":[]}"#, "", "spdxVersion"),
        ];
        for (text, location, words) in spdx {
            let error = parse_spdx(EvidenceKind::Spdx, text).unwrap_err();
            assert!(error.location.starts_with(location), "{}: {}", error.location, error.message);
            assert!(error.message.contains(words), "{}: {}", error.location, error.message);
        }
    }
}
