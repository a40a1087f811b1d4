// The one place that turns failures into PowerShell error records (DESIGN.md "Cmdlets": errors).
// Each engine error kind has a stable error id and category; the target is the image concerned.
using System.Management.Automation;
using VDisk.Engine.Core;

namespace VDisk.PowerShell.Commands;

/// <summary>Builds error records with stable ids for engine and path failures.</summary>
internal static class VDiskErrors
{
    /// <summary>Error id for a path that is not on the file system (e.g. Env:\ or HKLM:\).</summary>
    public const string NotFileSystemPathId = "NotFileSystemPath";
    /// <summary>Error id for a conversion whose output would replace its own input.</summary>
    public const string DestinationIsSourceId = "DestinationIsSource";
    /// <summary>Error id for a snapshot name that matches several snapshots where one is needed.</summary>
    public const string AmbiguousSnapshotId = "AmbiguousSnapshot";
    /// <summary>Error id for one -DestinationPath given for several inputs.</summary>
    public const string AmbiguousDestinationId = "AmbiguousDestination";
    /// <summary>Error id for a repair refused because the damage cannot be fixed safely.</summary>
    public const string NotRepairableId = "ImageNotRepairable";
    /// <summary>Error id for an exception VDisk did not expect: a bug, reported about the image it happened on.</summary>
    public const string InternalErrorId = "InternalError";

    /// <summary>The error id and category for each engine error kind.</summary>
    public static (string Id, ErrorCategory Category) Classify(VDiskErrorKind kind) => kind switch
    {
        VDiskErrorKind.NotFound => ("FileNotFound", ErrorCategory.ObjectNotFound),
        VDiskErrorKind.NotAnImage => ("NotAnImage", ErrorCategory.InvalidData),
        VDiskErrorKind.Corrupt => ("CorruptImage", ErrorCategory.InvalidData),
        VDiskErrorKind.Unsupported => ("UnsupportedFeature", ErrorCategory.NotImplemented),
        VDiskErrorKind.AlreadyExists => ("FileExists", ErrorCategory.ResourceExists),
        VDiskErrorKind.BackingMissing => ("BackingFileMissing", ErrorCategory.ObjectNotFound),
        VDiskErrorKind.ChainLoop => ("BackingChainLoop", ErrorCategory.InvalidData),
        VDiskErrorKind.ChainTooDeep => ("BackingChainTooDeep", ErrorCategory.LimitsExceeded),
        VDiskErrorKind.ReadOnly => ("ImageReadOnly", ErrorCategory.PermissionDenied),
        VDiskErrorKind.InvalidArgument => ("InvalidArgument", ErrorCategory.InvalidArgument),
        VDiskErrorKind.IoError => ("IOError", ErrorCategory.WriteError),
        VDiskErrorKind.SnapshotNotFound => ("SnapshotNotFound", ErrorCategory.ObjectNotFound),
        VDiskErrorKind.InUse => ("ImageInUse", ErrorCategory.ResourceUnavailable),
        VDiskErrorKind.UnsupportedDestination => ("UnsupportedDestination", ErrorCategory.InvalidArgument),
        VDiskErrorKind.DestinationIsSource => (DestinationIsSourceId, ErrorCategory.InvalidArgument),
        VDiskErrorKind.NotInChain => ("BaseNotInChain", ErrorCategory.InvalidArgument),
        VDiskErrorKind.NoBacking => ("NoBackingFile", ErrorCategory.InvalidOperation),
        VDiskErrorKind.DomainNotFound => ("DomainNotFound", ErrorCategory.ObjectNotFound),
        VDiskErrorKind.DiskNotFound => ("DiskTargetNotFound", ErrorCategory.ObjectNotFound),
        VDiskErrorKind.DomainRuleViolated => ("DomainRuleViolated", ErrorCategory.InvalidOperation),
        VDiskErrorKind.InvalidDomainXml => ("InvalidDomainXml", ErrorCategory.InvalidData),
        VDiskErrorKind.LibvirtFailed => ("LibvirtFailed", ErrorCategory.ResourceUnavailable),
        VDiskErrorKind.BackupPointNotFound => ("BackupPointNotFound", ErrorCategory.ObjectNotFound),
        VDiskErrorKind.HoldsData => ("ImageHoldsData", ErrorCategory.PermissionDenied),
        VDiskErrorKind.PassphraseRequired => ("PassphraseRequired", ErrorCategory.AuthenticationError),
        VDiskErrorKind.WrongPassphrase => ("WrongPassphrase", ErrorCategory.AuthenticationError),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "VDiskErrors.Classify has no entry for this kind."),
    };

    /// <summary>
    /// An error record for a failure while working on <paramref name="target"/>, or null when the exception is
    /// not one a cmdlet should report per input (a bug, or the pipeline stopping), so the caller rethrows it.
    /// </summary>
    public static ErrorRecord? FromException(Exception exception, string target) => exception switch
    {
        VDiskException e => Record(e, Classify(e.Kind), e.Path ?? target),
        SessionStateException =>
            Record(exception, Classify(VDiskErrorKind.NotFound), target),
        UnauthorizedAccessException => Record(exception, Classify(VDiskErrorKind.ReadOnly), target),
        IOException => Record(exception, Classify(VDiskErrorKind.IoError), target),
        _ => null,
    };

    /// <summary>
    /// An InternalError about <paramref name="target"/>: <paramref name="exception"/> (kept with its stack trace) is a
    /// bug in VDisk, said so in the message, so that it is reported rather than mistaken for a problem with the image.
    /// </summary>
    public static ErrorRecord Internal(Exception exception, string target)
    {
        var record = Record(exception, (InternalErrorId, ErrorCategory.NotSpecified), target);
        record.ErrorDetails = new ErrorDetails(
            $"{target}: VDisk failed with an unexpected {exception.GetType().FullName}: {exception.Message} This is a bug in VDisk, " +
            "not a problem with your command; please report it with the output of $Error[0].Exception.ToString(). Other inputs are still processed.");
        return record;
    }

    /// <summary>An InvalidArgument error about <paramref name="target"/> (null for the command line as a whole).</summary>
    public static ErrorRecord InvalidArgument(string message, string? target) =>
        Record(new ArgumentException(message), Classify(VDiskErrorKind.InvalidArgument), target);

    /// <summary>An InvalidArgument error for a typed path holding a NUL character, which no file name can.</summary>
    public static ErrorRecord NulInPath(string path) =>
        InvalidArgument($"The path '{path.Replace('\0', '?')}' contains a NUL character, which no file name can hold.", path);

    /// <summary>A SnapshotNotFound error: <paramref name="image"/> has no snapshot with <paramref name="what"/> ("id '3'").</summary>
    public static ErrorRecord SnapshotNotFound(string image, string what, IEnumerable<string> names)
    {
        var list = names.Distinct().Take(10).ToList();
        string has = list.Count == 0 ? "it has no snapshots" : $"it has: {string.Join(", ", list)}";
        return Record(new ItemNotFoundException($"{image}: no internal snapshot with {what} ({has})."), Classify(VDiskErrorKind.SnapshotNotFound), image);
    }

    /// <summary>An AmbiguousSnapshot error: -Name matches several snapshots where one is needed.</summary>
    public static ErrorRecord AmbiguousSnapshot(string image, IEnumerable<(string Id, string Name)> matches) =>
        Record(new ArgumentException($"{image}: {string.Join(", ", matches.Select(m => $"snapshot {m.Id} ('{m.Name}')"))} all match; name one with -Id."),
            (AmbiguousSnapshotId, ErrorCategory.InvalidArgument), image);

    /// <summary>An error for a path whose provider is not the file system.</summary>
    public static ErrorRecord NotFileSystemPath(string path, ProviderInfo provider) =>
        Record(new ArgumentException($"'{path}' is a {provider.Name} path; disk images must be files on the file system."),
            (NotFileSystemPathId, ErrorCategory.InvalidArgument), path);

    /// <summary>
    /// A DestinationIsSource error: writing <paramref name="destination"/> would overwrite <paramref name="source"/>, being
    /// the same path or a symbolic or hard link to it.
    /// </summary>
    public static ErrorRecord DestinationIsSource(string source, string destination) =>
        Record(new ArgumentException(source == destination
                ? $"{source}: the destination is the source image itself; give -DestinationPath or another -DestinationFormat."
                : $"{destination} is a link to the source image {source}; converting onto it would replace the source. Give another -DestinationPath."),
            (DestinationIsSourceId, ErrorCategory.InvalidArgument), source);

    /// <summary>An AmbiguousDestination error: <paramref name="inputCount"/> inputs for the one <paramref name="destination"/>.</summary>
    public static ErrorRecord AmbiguousDestination(string destination, int inputCount) =>
        Record(new ArgumentException($"-DestinationPath '{destination}' names one output, but {inputCount} images were given; " +
                "leave -DestinationPath out to write each output beside its input, named after it."),
            (AmbiguousDestinationId, ErrorCategory.InvalidArgument), destination);

    /// <summary>An ImageNotRepairable error: the check found damage a repair cannot fix safely, so nothing was written.</summary>
    public static ErrorRecord NotRepairable(string image, IEnumerable<string> reasons) =>
        Record(new InvalidOperationException($"{image} was not repaired, and not changed: {string.Join("; ", reasons.Take(5))}. " +
                "Copy out what still reads (Convert-VDisk) or restore it from a backup."),
            (NotRepairableId, ErrorCategory.InvalidData), image);

    private static ErrorRecord Record(Exception exception, (string Id, ErrorCategory Category) kind, string? target) =>
        new(exception, kind.Id, kind.Category, target);
}
