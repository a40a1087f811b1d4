// One case of the malformed-image corpus (MalformedCorpus): an image file (with any files it names), and
// what VDisk must answer at each stage of using it. The stages are what the cmdlets do: Get-VDisk reads
// the header (Info), New-VDisk -BackingPath opens the whole chain (Open), Get-VDiskChain maps every layer
// (Map), Convert-VDisk and Compare-VDisk read every byte (Read). A case fails at one stage and every later
// one, with one error kind; a case that never fails is a valid image, and must be read as such.
using VDisk.Engine.Core;

namespace VDisk.Engine.Tests.Corpus;

/// <summary>How far into an image an operation goes.</summary>
public enum CorpusStage
{
    /// <summary>Header and top-level metadata (Get-VDisk); a broken backing chain is a warning here.</summary>
    Info,
    /// <summary>The image and its whole backing chain opened (New-VDisk -BackingPath).</summary>
    Open,
    /// <summary>Every layer's mapping walked (Get-VDiskChain).</summary>
    Map,
    /// <summary>Every guest byte read (Convert-VDisk, Compare-VDisk).</summary>
    Read,
}

/// <summary>A malformed (or deliberately valid) image and the answer VDisk must give for it.</summary>
public sealed record CorpusCase
{
    /// <summary>Unique name, also the name of the case's folder.</summary>
    public required string Name { get; init; }
    /// <summary>qcow2, vmdk, vdi or raw: the format the case is about.</summary>
    public required string Family { get; init; }
    /// <summary>Full path of the image every operation is given.</summary>
    public required string Path { get; init; }
    /// <summary>The first stage that fails, or null for an image that is valid at every stage.</summary>
    public CorpusStage? FailsAt { get; init; }
    /// <summary>The error kind of the failure.</summary>
    public VDiskErrorKind? Kind { get; init; }
    /// <summary>Text the error message must contain (a field name, a word of the problem), besides the file's path.</summary>
    public string? Mentions { get; init; }
    /// <summary>The file the error is about when it is not <see cref="Path"/> (a backing file, an extent).</summary>
    public string? ErrorPath { get; init; }
    /// <summary>True when Get-VDisk must warn (a probe that guessed raw, a backing chain it cannot follow).</summary>
    public bool WarnsAtInfo { get; init; }
    /// <summary>Why qemu-img answers differently from VDisk, or null when the two must agree.</summary>
    public string? QemuDiffers { get; init; }
    /// <summary>An internal snapshot (id) to convert as well, reading the snapshot table, or null.</summary>
    public string? Snapshot { get; init; }
    /// <summary>The error kind converting <see cref="Snapshot"/> must give, or null when it must succeed.</summary>
    public VDiskErrorKind? SnapshotError { get; init; }
    /// <summary>True when the case involves a FIFO, socket or device (never handed to qemu-img, which would block).</summary>
    public bool SpecialFile { get; init; }

    /// <summary>The folder holding the case's files.</summary>
    public string Folder => System.IO.Path.GetDirectoryName(Path)!;

    /// <summary>The error kind expected at <paramref name="stage"/>, or null when that stage must succeed.</summary>
    public VDiskErrorKind? ExpectedAt(CorpusStage stage) => FailsAt is { } first && stage >= first ? Kind : null;

    /// <summary>The FullyQualifiedErrorId prefix a cmdlet must give at <paramref name="stage"/>, or null.</summary>
    public string? ErrorIdAt(CorpusStage stage) => ExpectedAt(stage) is { } kind ? ErrorIds.Of(kind) : null;

    /// <summary>The known qcow2 core failure of this case (see <see cref="MalformedCorpus.KnownQcow2CoreFailures"/>), or null.</summary>
    public string? KnownCoreFailure => MalformedCorpus.KnownQcow2CoreFailures.GetValueOrDefault(Name);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>The error ids the cmdlets give for each engine error kind: the public contract scripts test.</summary>
public static class ErrorIds
{
    /// <summary>The id for <paramref name="kind"/>.</summary>
    public static string Of(VDiskErrorKind kind) => kind switch
    {
        VDiskErrorKind.NotFound => "FileNotFound",
        VDiskErrorKind.NotAnImage => "NotAnImage",
        VDiskErrorKind.Corrupt => "CorruptImage",
        VDiskErrorKind.Unsupported => "UnsupportedFeature",
        VDiskErrorKind.BackingMissing => "BackingFileMissing",
        VDiskErrorKind.ChainLoop => "BackingChainLoop",
        VDiskErrorKind.ChainTooDeep => "BackingChainTooDeep",
        VDiskErrorKind.ReadOnly => "ImageReadOnly",
        VDiskErrorKind.IoError => "IOError",
        VDiskErrorKind.SnapshotNotFound => "SnapshotNotFound",
        VDiskErrorKind.PassphraseRequired => "PassphraseRequired",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "no input error has this kind"),
    };
}
