// The engine's one exception type (DESIGN.md "Cmdlets": one place maps engine errors to records).
// Each failure has a kind, which the cmdlets turn into a stable error id and category.
namespace VDisk.Engine.Core;

/// <summary>What went wrong, in terms a caller can act on.</summary>
public enum VDiskErrorKind
{
    /// <summary>The file does not exist.</summary>
    NotFound,
    /// <summary>The file exists but is not a disk image of the expected format.</summary>
    NotAnImage,
    /// <summary>The image's metadata is inconsistent or out of range.</summary>
    Corrupt,
    /// <summary>A feature of the image that this version does not support.</summary>
    Unsupported,
    /// <summary>The output already exists.</summary>
    AlreadyExists,
    /// <summary>A backing file named by the image cannot be found.</summary>
    BackingMissing,
    /// <summary>The backing chain refers to itself.</summary>
    ChainLoop,
    /// <summary>The backing chain is deeper than the limit.</summary>
    ChainTooDeep,
    /// <summary>The image cannot be written (read-only, or marked corrupt).</summary>
    ReadOnly,
    /// <summary>An option or argument is invalid.</summary>
    InvalidArgument,
    /// <summary>The host reported an I/O error.</summary>
    IoError,
    /// <summary>The image has no internal snapshot with the requested id or name.</summary>
    SnapshotNotFound,
    /// <summary>Another process (a running virtual machine) holds a conflicting lock on the image.</summary>
    InUse,
    /// <summary>The destination cannot take the output: a character device, FIFO or socket, or a block device that does not fit.</summary>
    UnsupportedDestination,
    /// <summary>The output would replace the source image itself (the same file, or a symbolic or hard link to it).</summary>
    DestinationIsSource,
    /// <summary>An image named as part of a backing chain (a merge's base) is not in that chain.</summary>
    NotInChain,
    /// <summary>The operation needs a backing file and the image has none (a commit of a standalone image).</summary>
    NoBacking,
    /// <summary>No libvirt domain has the given name.</summary>
    DomainNotFound,
    /// <summary>The domain has no disk with the given target name.</summary>
    DiskNotFound,
    /// <summary>The domain XML breaks a rule of libvirt's QEMU driver, which would refuse it.</summary>
    DomainRuleViolated,
    /// <summary>The text is not a libvirt domain XML document.</summary>
    InvalidDomainXml,
    /// <summary>virsh (libvirt) failed or is not installed.</summary>
    LibvirtFailed,
    /// <summary>A backup set has no restore point at or before the requested time.</summary>
    BackupPointNotFound,
    /// <summary>A measurement would write into an existing image, destroying its data, without being allowed to.</summary>
    HoldsData,
    /// <summary>An encrypted image needs a passphrase and none was given.</summary>
    PassphraseRequired,
    /// <summary>No passphrase given opens any active key slot of an encrypted image.</summary>
    WrongPassphrase,
}

/// <summary>An engine failure with a kind and the path of the file concerned.</summary>
public sealed class VDiskException : Exception
{
    /// <summary>Creates an exception.</summary>
    public VDiskException(VDiskErrorKind kind, string? path, string message, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        Path = path;
    }

    /// <summary>The failure kind.</summary>
    public VDiskErrorKind Kind { get; }

    /// <summary>The file the failure concerns, when there is one.</summary>
    public string? Path { get; }

    /// <summary>Shortcut for a corrupt-image error naming the field and value.</summary>
    public static VDiskException Corrupt(string path, string message) => new(VDiskErrorKind.Corrupt, path, $"{path}: {message}");

    /// <summary>Shortcut for an unsupported-feature error.</summary>
    public static VDiskException Unsupported(string path, string message) => new(VDiskErrorKind.Unsupported, path, $"{path}: {message}");

    /// <summary>Shortcut for an invalid-argument error.</summary>
    public static VDiskException Invalid(string? path, string message) => new(VDiskErrorKind.InvalidArgument, path, message);
}
