// Corpus: VMDK descriptor files (VMware Virtual Disk Format 1.1, "The Descriptor File") with hostile extents and
// parents: absolute paths out of the folder, ../ names, missing files, folders, the descriptor itself, FIFOs,
// sockets and devices, names that are empty, unterminated or too long, sizes out of range, too many extents,
// unsupported types and access modes, missing or bad header keys. The corpus never declares a format, so every
// descriptor here is a probed one: it may only name files in its own folder.
using VDisk.Engine.Core;
using static VDisk.Engine.Tests.Corpus.CorpusStage;
using static VDisk.Engine.Tests.Corpus.VmdkSample;

namespace VDisk.Engine.Tests.Corpus;

internal static class VmdkDescriptorCases
{
    private const string QemuFollows = "QEMU follows the extent name wherever it points";

    public static void Write(CorpusWriter w)
    {
        Case(w, "valid", Flat("image-flat.vmdk"), Outcome.Valid);
        Case(w, "crlf", Flat("image-flat.vmdk").Replace("\n", "\r\n"), Outcome.Valid);
        Case(w, "extent-absolute-outside", Flat("/etc/passwd", 1), Outcome.Unsupported(Info, "outside its folder"), QemuFollows);
        Case(w, "extent-absolute-inside", null, Outcome.Valid, absoluteExtent: true);
        Case(w, "extent-dot-dot", Flat("../vmdk-descriptor-outside-target/flat.raw"), Outcome.Unsupported(Info, "leaves"), QemuFollows, outsideTarget: true);
        Case(w, "extent-missing", Flat("missing-flat.vmdk"), Outcome.Fails(Info, VDiskErrorKind.NotFound, "not found"));
        Case(w, "extent-folder", Flat("subfolder"), Outcome.Fails(Info, VDiskErrorKind.NotAnImage, "directory"), makeFolder: "subfolder", errorFile: "subfolder");
        Case(w, "extent-is-the-descriptor", Flat("image.vmdk", 1), Outcome.Corrupt(Info, "descriptor file itself"), "QEMU reads its own descriptor as the extent's data; VDisk refuses an extent that names the descriptor");
        Case(w, "extent-link-to-descriptor", Flat("link-flat.vmdk", 1), Outcome.Valid, link: ("link-flat.vmdk", "image.vmdk"));
        Case(w, "extent-name-too-long", Flat(new string('x', 5000)), Outcome.Corrupt(Info, "bytes long"));
        Case(w, "extent-name-empty", Flat(""), Outcome.Corrupt(Info, "file name"));
        Case(w, "extent-name-unterminated", Descriptor("monolithicFlat", "RW 2048 FLAT \"image-flat.vmdk 0"), Outcome.Corrupt(Info, "double quotes"));
        Case(w, "extent-name-nul", Flat("image-flat.vmdk").Replace("-flat", "-fl\0at"), Outcome.Valid, warns: true,
            qemuDiffers: "QEMU reads the descriptor up to the NUL byte and fails on the cut extent line; VDisk sees text after the NUL, so not a descriptor file, and reads the file as raw with a warning");
        Case(w, "extent-sectors-zero", Flat("image-flat.vmdk", 0), Outcome.Corrupt(Info, "size"));
        Case(w, "extent-sectors-negative", Descriptor("monolithicFlat", "RW -5 FLAT \"image-flat.vmdk\" 0"), Outcome.Corrupt(Info, "size"));
        Case(w, "extent-sectors-huge", Flat("image-flat.vmdk", (1L << 53) + 1), Outcome.Corrupt(Info, "size"), "qemu-img info accepts an extent of more sectors than VDisk reads (2^53)");
        Case(w, "extent-offset-huge", Flat("image-flat.vmdk", offset: 1L << 50), Outcome.Valid);
        Case(w, "extent-offset-garbage", Descriptor("monolithicFlat", "RW 2048 FLAT \"image-flat.vmdk\" zz"), Outcome.Corrupt(Info, "offset"));
        Case(w, "extents-too-many", Descriptor("twoGbMaxExtentFlat",
            string.Join("\n", Enumerable.Repeat("RW 1 FLAT \"image-flat.vmdk\" 0", 8193))), Outcome.Corrupt(Info, "more than"));
        Case(w, "extent-type-zero", Descriptor("monolithicFlat", "RW 2048 ZERO"), Outcome.Unsupported(Info, "ZERO"));
        Case(w, "extent-noaccess", Descriptor("monolithicFlat", "NOACCESS 2048 FLAT \"image-flat.vmdk\" 0"), Outcome.Unsupported(Info, "NOACCESS"));
        Case(w, "create-type-unknown", Descriptor("customType", "RW 2048 FLAT \"image-flat.vmdk\" 0"), Outcome.Unsupported(Info, "createType"));
        Case(w, "create-type-missing", Flat("image-flat.vmdk").Replace("createType=\"monolithicFlat\"\n", ""), Outcome.Corrupt(Info, "createType"));
        Case(w, "cid-missing", Flat("image-flat.vmdk").Replace("CID=12345678\n", ""), Outcome.Corrupt(Info, "CID"), "QEMU does not require the CID lines; VDisk does (it writes a new CID when it writes the image)");
        Case(w, "cid-garbage", Flat("image-flat.vmdk").Replace("CID=12345678", "CID=zzzzzzzz"), Outcome.Corrupt(Info, "CID"));
        Case(w, "version-four", Flat("image-flat.vmdk").Replace("version=1", "version=4"), Outcome.Valid);
        Case(w, "parent-absolute-outside", null, Outcome.Unsupported(Open, "outside its folder"),
            "QEMU follows parentFileNameHint wherever it points", warns: true, outsideParent: true);
        Case(w, "parent-json", Flat("image-flat.vmdk", parent: "json:{\"file.filename\":\"/etc/passwd\"}"), Outcome.Unsupported(Open, "JSON"), warns: true);
        Case(w, "parent-too-long", Flat("image-flat.vmdk", parent: new string('p', 4200)), Outcome.Corrupt(Info, "bytes long"));
        Case(w, "parent-self", Flat("image-flat.vmdk", parent: "image.vmdk"), Outcome.Fails(Open, VDiskErrorKind.ChainLoop, "loops"), warns: true);
        Sparse(w);
        if (w.SpecialFiles) Special(w);
    }

    // A descriptor image.vmdk (text, or the sample's when null) beside a 1 MiB image-flat.vmdk, with what the case needs.
    private static void Case(CorpusWriter w, string label, string? descriptor, Outcome outcome, string? qemuDiffers = null, bool warns = false,
        bool absoluteExtent = false, bool outsideTarget = false, string? makeFolder = null, (string Link, string Target)? link = null, string? errorFile = null, bool outsideParent = false)
    {
        string name = $"vmdk-descriptor-{label}";
        string folder = w.FolderOf(name);
        string path = Path.Combine(folder, "image.vmdk");
        string outsideFolder = Path.GetFullPath(Path.Combine(folder, "..", "vmdk-descriptor-outside-target"));
        descriptor ??= absoluteExtent ? VmdkSample.Flat(Path.Combine(folder, "image-flat.vmdk"))
            : outsideParent ? Descriptor("twoGbMaxExtentSparse", $"RW {CapacitySectors} SPARSE \"image-s001.vmdk\"", Path.Combine(outsideFolder, "parent.vmdk"))
            : "";
        if (outsideParent) CorpusWriter.WriteSparse(Path.Combine(folder, "image-s001.vmdk"), VmdkSample.Sparse("image-s001.vmdk"));
        File.WriteAllText(path, descriptor);
        CorpusWriter.WriteSparse(Path.Combine(folder, "image-flat.vmdk"), FlatData());
        if (makeFolder != null) Directory.CreateDirectory(Path.Combine(folder, makeFolder));
        if (link is { } l) File.CreateSymbolicLink(Path.Combine(folder, l.Link), l.Target);
        if (outsideTarget || outsideParent)
        {
            Directory.CreateDirectory(outsideFolder);
            File.WriteAllBytes(Path.Combine(outsideFolder, "flat.raw"), FlatData());
            File.WriteAllBytes(Path.Combine(outsideFolder, "parent.vmdk"), VmdkSample.Sparse("parent.vmdk"));
        }
        w.Add(name, "vmdk", path, outcome, warns, errorFile, qemuDiffers);
    }

    // Split sparse images: a child with a valid parent, and extents whose headers disagree with the descriptor.
    private static void Sparse(CorpusWriter w)
    {
        string name = "vmdk-descriptor-sparse-parent-valid";
        string folder = w.FolderOf(name);
        CorpusWriter.WriteSparse(Path.Combine(folder, "child.vmdk"), VmdkSample.Sparse("child.vmdk", parent: "parent.vmdk"));
        CorpusWriter.WriteSparse(Path.Combine(folder, "parent.vmdk"), VmdkSample.Sparse("parent.vmdk"));
        w.Add(name, "vmdk", Path.Combine(folder, "child.vmdk"), Outcome.Valid);

        foreach (var (label, sectors, change, outcome) in new (string, long, Action<byte[]>, Outcome)[]
        {
            ("split-valid", CapacitySectors, _ => { }, Outcome.Valid),
            ("split-capacity-mismatch", 2 * CapacitySectors, _ => { }, Outcome.Corrupt(Info, "capacity")),
            ("split-extent-bad-magic", CapacitySectors, b => "XXXX"u8.CopyTo(b), Outcome.Corrupt(Info, "magicNumber")),
            ("split-extent-truncated", CapacitySectors, b => Array.Clear(b, 4, b.Length - 4), Outcome.Unsupported(Info, "version")),
        })
        {
            name = $"vmdk-descriptor-{label}";
            folder = w.FolderOf(name);
            File.WriteAllText(Path.Combine(folder, "image.vmdk"), Descriptor("twoGbMaxExtentSparse", $"RW {sectors} SPARSE \"image-s001.vmdk\""));
            CorpusWriter.WriteSparse(Path.Combine(folder, "image-s001.vmdk"), Bytes.With(VmdkSample.Sparse("image-s001.vmdk"), change));
            w.Add(name, "vmdk", Path.Combine(folder, "image.vmdk"), outcome, errorFile: label == "split-valid" ? null : "image-s001.vmdk",
                qemuDiffers: label == "split-capacity-mismatch" ? "QEMU takes the descriptor's size and ignores the extent header's capacity; VDisk refuses the disagreement" : null);
        }
    }

    // Extents and parents that are not regular files: refused before they are opened.
    private static void Special(CorpusWriter w)
    {
        foreach (var (label, make, mentions) in new (string, Action<string>, string)[]
        {
            ("fifo", CorpusWriter.MakeFifo, "named pipe"),
            ("socket", CorpusWriter.MakeSocket, "socket"),
            ("link-to-dev-zero", p => File.CreateSymbolicLink(p, "/dev/zero"), "character device"),
        })
        {
            string name = $"vmdk-descriptor-extent-{label}";
            string folder = w.FolderOf(name);
            File.WriteAllText(Path.Combine(folder, "image.vmdk"), VmdkSample.Flat("special-flat.vmdk"));
            make(Path.Combine(folder, "special-flat.vmdk"));
            w.Add(name, "vmdk", Path.Combine(folder, "image.vmdk"), Outcome.Fails(Info, VDiskErrorKind.NotAnImage, mentions),
                errorFile: "special-flat.vmdk", special: true);
        }
        const string parent = "vmdk-descriptor-parent-fifo";
        string f = w.FolderOf(parent);
        File.WriteAllText(Path.Combine(f, "image.vmdk"), VmdkSample.Flat("image-flat.vmdk", parent: "parent.vmdk"));
        CorpusWriter.WriteSparse(Path.Combine(f, "image-flat.vmdk"), FlatData());
        CorpusWriter.MakeFifo(Path.Combine(f, "parent.vmdk"));
        w.Add(parent, "vmdk", Path.Combine(f, "image.vmdk"), Outcome.Fails(Open, VDiskErrorKind.NotAnImage, "named pipe"),
            warns: true, errorFile: "parent.vmdk", special: true);
    }
}
