package main

import (
	"debug/buildinfo"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The SBOM is an SPDX 2.3 JSON document (https://spdx.github.io/spdx-spec/v2.3/):
// the image, the Go toolchain and every module linked into the binary (as
// "go version -m" lists them, read with debug/buildinfo) and each Debian
// package, with package URLs (https://github.com/package-url/purl-spec).

type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name                  string            `json:"name"`
	SPDXID                string            `json:"SPDXID"`
	VersionInfo           string            `json:"versionInfo,omitempty"`
	Supplier              string            `json:"supplier,omitempty"`
	DownloadLocation      string            `json:"downloadLocation"`
	FilesAnalyzed         bool              `json:"filesAnalyzed"`
	LicenseConcluded      string            `json:"licenseConcluded"`
	LicenseDeclared       string            `json:"licenseDeclared"`
	CopyrightText         string            `json:"copyrightText"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose,omitempty"`
	Checksums             []spdxChecksum    `json:"checksums,omitempty"`
	ExternalRefs          []spdxExternalRef `json:"externalRefs,omitempty"`
}

type spdxChecksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func spdxID(kind, name, version string) string {
	return "SPDXRef-" + kind + "-" + strings.Trim(spdxIDUnsafe.ReplaceAllString(name+"-"+version, "-"), "-")
}

func purl(typ, namespace, name, version string, qualifiers ...string) string {
	s := "pkg:" + typ + "/"
	if namespace != "" {
		s += namespace + "/"
	}
	s += name + "@" + url.PathEscape(version)
	if len(qualifiers) > 0 {
		s += "?" + strings.Join(qualifiers, "&")
	}
	return s
}

func purlRef(p string) []spdxExternalRef {
	return []spdxExternalRef{{ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: p}}
}

func (o Options) sbom(c component, ref string, p v1.Platform, digest v1.Hash, binPath string, debs []*deb) ([]byte, error) {
	info, err := buildinfo.ReadFile(binPath)
	if err != nil {
		return nil, fmt.Errorf("reading the build information of %s: %w", binPath, err)
	}
	repo := strings.SplitN(ref, ":", 2)[0]
	imageID := "SPDXRef-Image"
	doc := spdxDocument{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              fmt.Sprintf("%s (%s)", ref, platformString(p)),
		DocumentNamespace: fmt.Sprintf("%s/spdx/%s/%s", o.Source, c.Name, digest),
		CreationInfo: spdxCreationInfo{
			Created:  o.Epoch.UTC().Format(time.RFC3339),
			Creators: []string{"Organization: The Portico authors", "Tool: portico-hack-images"},
		},
	}
	doc.Packages = append(doc.Packages, spdxPackage{
		Name: repo, SPDXID: imageID, VersionInfo: o.Version, DownloadLocation: "NOASSERTION",
		LicenseConcluded: "NOASSERTION", LicenseDeclared: o.License, CopyrightText: "NOASSERTION",
		PrimaryPackagePurpose: "CONTAINER",
		Checksums:             []spdxChecksum{{Algorithm: "SHA256", ChecksumValue: digest.Hex}},
		ExternalRefs: purlRef(purl("oci", "", c.Name, digest.String(),
			"arch="+p.Architecture, "repository_url="+url.QueryEscape(repo))),
	})
	doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", imageID})
	add := func(pkg spdxPackage) {
		doc.Packages = append(doc.Packages, pkg)
		doc.Relationships = append(doc.Relationships, spdxRelationship{imageID, "CONTAINS", pkg.SPDXID})
	}

	goVersion := strings.TrimPrefix(info.GoVersion, "go")
	add(spdxPackage{Name: "stdlib", SPDXID: spdxID("Go", "stdlib", goVersion), VersionInfo: goVersion,
		DownloadLocation: "https://go.dev/dl/", LicenseConcluded: "NOASSERTION", LicenseDeclared: "BSD-3-Clause",
		CopyrightText: "NOASSERTION", ExternalRefs: purlRef(purl("golang", "", "stdlib", info.GoVersion))})
	mainVersion := info.Main.Version
	if mainVersion == "" || mainVersion == "(devel)" {
		mainVersion = o.Version
	}
	add(spdxPackage{Name: info.Main.Path, SPDXID: spdxID("Go", info.Main.Path, mainVersion), VersionInfo: mainVersion,
		DownloadLocation: o.Source, LicenseConcluded: "NOASSERTION", LicenseDeclared: o.License,
		CopyrightText: "NOASSERTION", PrimaryPackagePurpose: "APPLICATION",
		ExternalRefs: purlRef(purl("golang", "", info.Main.Path, mainVersion))})
	for _, m := range info.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		pkg := spdxPackage{Name: m.Path, SPDXID: spdxID("Go", m.Path, m.Version), VersionInfo: m.Version,
			DownloadLocation: "https://proxy.golang.org/" + m.Path + "/@v/" + m.Version + ".zip",
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
			PrimaryPackagePurpose: "LIBRARY", ExternalRefs: purlRef(purl("golang", "", m.Path, m.Version))}
		add(pkg)
	}
	for _, d := range debs {
		add(spdxPackage{Name: d.Name, SPDXID: spdxID("Deb", d.Name, d.Version+"-"+d.Arch), VersionInfo: d.Version,
			Supplier: "Organization: Debian", DownloadLocation: "NOASSERTION",
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
			PrimaryPackagePurpose: "OPERATING-SYSTEM",
			ExternalRefs:          purlRef(purl("deb", "debian", d.Name, d.Version, "arch="+d.Arch, "distro="+o.Distro))})
	}
	return prettyJSON(doc)
}
