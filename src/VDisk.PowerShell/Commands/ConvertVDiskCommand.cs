// Convert-VDisk: converts images to another format or layout (qemu-img convert): compressed, as an overlay
// of a backing image (-B), from an internal snapshot (-l). Each input is written beside itself, named after it,
// unless one -DestinationPath is given for a single input.
using System.Management.Automation;
using System.Security;
using VDisk.Engine.Crypto;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;

namespace VDisk.PowerShell.Commands;

/// <summary>Converts disk images to another format, variant or layout.</summary>
[Cmdlet(VerbsData.Convert, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(VDiskInfo))]
public sealed class ConvertVDiskCommand : ImageInputCmdletBase
{
    private const ulong DefaultSparseThreshold = 4096;

    /// <summary>The image to write, for a single input. By default each output goes beside its input, named after it.</summary>
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    public string DestinationPath { get; set; } = string.Empty;

    /// <summary>Format to write; by default from the -DestinationPath extension (as New-VDisk), else qcow2.</summary>
    [Parameter]
    public VDiskFormat DestinationFormat { get; set; }

    /// <summary>Variant of the output: a VMDK subformat, or Dynamic / Static for VDI.</summary>
    [Parameter]
    public VDiskSubformat Subformat { get; set; }

    /// <summary>Format of the source image; by default it is probed from its magic bytes.</summary>
    [Parameter]
    public VDiskFormat SourceFormat { get; set; }

    /// <summary>Compresses the output: qcow2 compressed clusters, or a streamOptimized VMDK (qemu-img -c).</summary>
    [Parameter]
    public SwitchParameter Compress { get; set; }

    /// <summary>Compression algorithm of a qcow2 output (default Zlib).</summary>
    [Parameter]
    public CompressionType CompressionType { get; set; }

    /// <summary>qcow2 cluster size of the output in bytes (default 64 KiB).</summary>
    [Parameter]
    public uint ClusterSizeBytes { get; set; }

    /// <summary>How much host space the output reserves up front (default Off).</summary>
    [Parameter]
    public Preallocation Preallocation { get; set; }

    /// <summary>Makes the output an overlay of this image, holding only what differs from it (qemu-img convert -B).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string BackingPath { get; set; } = string.Empty;

    /// <summary>Format of -BackingPath, recorded in the output; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat BackingFormat { get; set; }

    /// <summary>Zero runs of at least this many bytes are left unwritten (qemu-img -S); 0 writes every byte.</summary>
    [Parameter]
    public ulong SparseThresholdBytes { get; set; } = DefaultSparseThreshold;

    /// <summary>Converts this internal snapshot (id or name) instead of the current state (qemu-img -l).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string Snapshot { get; set; } = string.Empty;

    /// <summary>Worker threads reading, zero-detecting and compressing (default: the number of processors).</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int ThrottleLimit { get; set; } = Environment.ProcessorCount;

    /// <summary>Cache mode of the output, with QEMU's names (default Writeback).</summary>
    [Parameter]
    public CacheMode CacheMode { get; set; }

    /// <summary>Cache mode of the source and its backing chain (default Writeback).</summary>
    [Parameter]
    public CacheMode SourceCacheMode { get; set; }

    /// <summary>Overwrites an existing output.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Writes the output's VDiskInfo.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Passphrases of encrypted source images (SecureStrings or PSCredentials), each tried on every encrypted image of the chain.</summary>
    [Parameter]
    [PassphraseTransformation]
    public SecureString[]? SourcePassphrase { get; set; }

    /// <summary>Files whose first lines are passphrases of encrypted source images.</summary>
    [Parameter]
    public string[]? SourcePassphraseFile { get; set; }

    /// <summary>Encrypts the output with LUKS (qcow2 only; not with -Compress, as in QEMU).</summary>
    [Parameter]
    public SwitchParameter Encrypt { get; set; }

    /// <summary>The output's passphrase with -Encrypt: a SecureString, or a PSCredential (its password).</summary>
    [Parameter]
    [PassphraseTransformation]
    public SecureString? Passphrase { get; set; }

    /// <summary>A file whose first line is the output's passphrase (like QEMU's secret,file=).</summary>
    [Parameter]
    public string? PassphraseFile { get; set; }

    /// <summary>The LUKS cipher as cipher-keybits-mode-ivgen (default aes-256-xts-plain64, qemu-img's default).</summary>
    [Parameter]
    public string Cipher { get; set; } = EncryptionInput.DefaultCipher;

    /// <summary>The hash of the key derivation (PBKDF2) and the anti-forensic splitter: sha1, sha256 (default), sha384 or sha512.</summary>
    [Parameter]
    public string HashAlgorithm { get; set; } = EncryptionInput.DefaultHash;

    /// <summary>How long deriving the output's key from its passphrase should take, in milliseconds (default 2000, as qemu-img).</summary>
    [Parameter]
    [ValidateRange(1, 600000)]
    public int IterTimeMilliseconds { get; set; } = EncryptionInput.DefaultIterTimeMilliseconds;

    private static readonly string[] Qcow2OnlyParameters = { nameof(ClusterSizeBytes), nameof(CompressionType) };
    private static readonly StringComparer PathComparer = OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;

    private readonly List<string> _inputsForDestination = new();
    private readonly HashSet<string> _written = new(PathComparer);
    private VDiskFormat _format;
    private string? _backingFull;
    private LuksFormatOptions? _encryption;
    private Passphrase? _passphrase;

    /// <summary>Settles the output format and checks that the options fit it, before any input is read.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        _format = IsBound(nameof(DestinationFormat)) ? DestinationFormat
            : IsBound(nameof(DestinationPath)) ? VDiskFormatConversion.FromExtension(DestinationPath)
            : VDiskFormat.Qcow2;
        if (OptionProblem() is { } problem)
            ThrowTerminatingError(VDiskErrors.InvalidArgument(problem, IsBound(nameof(DestinationPath)) ? DestinationPath : null));
        if (IsBound(nameof(BackingPath))) _backingFull = ResolveLiteralPathOrStop(BackingPath);
        InputPassphrases = ReadPassphrases(SourcePassphrase, SourcePassphraseFile);
        if (!Encrypt) return;
        try { _encryption = EncryptionInput.Options(Cipher, HashAlgorithm, IterTimeMilliseconds); }
        catch (VDiskException e) { ThrowTerminatingError(VDiskErrors.FromException(e, MyInvocation.MyCommand.Name)!); }
        _passphrase = NewPassphrase(Passphrase, PassphraseFile);
    }

    /// <summary>
    /// Converts the image beside itself, or keeps it for the one -DestinationPath (see EndProcessing). An output
    /// this command wrote earlier (met again by Get-ChildItem or a wildcard) is skipped.
    /// </summary>
    protected override void ProcessImage(string fullPath)
    {
        if (_written.Contains(fullPath))
        {
            WriteVerbose($"Skipping '{fullPath}': this command wrote it.");
            return;
        }
        if (IsBound(nameof(DestinationPath)))
        {
            _inputsForDestination.Add(fullPath);
            return;
        }
        string beside = System.IO.Path.ChangeExtension(fullPath, _format.Extension());
        Convert(fullPath, beside);
    }

    /// <summary>Converts the single input to -DestinationPath; several inputs for it are an AmbiguousDestination error.</summary>
    protected override void EndProcessing()
    {
        if (_inputsForDestination.Count > 1)
            ThrowTerminatingError(VDiskErrors.AmbiguousDestination(DestinationPath, _inputsForDestination.Count));
        if (_inputsForDestination.Count == 1 && ResolveLiteralPath(DestinationPath) is { } destination)
            Convert(_inputsForDestination[0], destination);
    }

    private string? OptionProblem()
    {
        var qcow2Only = Qcow2OnlyParameters.Where(IsBound).ToArray();
        if (_format != VDiskFormat.Qcow2 && qcow2Only.Length > 0)
            return $"-{string.Join(", -", qcow2Only)} apply to qcow2 output only, not {_format}.";
        if (Compress && _format is not (VDiskFormat.Qcow2 or VDiskFormat.Vmdk))
            return $"-Compress applies to qcow2 and VMDK output only, not {_format}.";
        if (!Encrypt && EncryptionInput.Parameters.FirstOrDefault(IsBound) is { } lone)
            return $"-{lone} applies only with -Encrypt.";
        if (Encrypt && _format != VDiskFormat.Qcow2)
            return $"-Encrypt applies to qcow2 output only, not {_format}.";
        if (Encrypt && Compress)
            return "-Compress and -Encrypt cannot be used together: QEMU refuses compressed clusters in an encrypted qcow2 image, so VDisk does too.";
        if (IsBound(nameof(Subformat)) && Subformat.MismatchWith(_format) is { } mismatch)
            return mismatch;
        if (IsBound(nameof(BackingFormat)) && !IsBound(nameof(BackingPath)))
            return "-BackingFormat needs -BackingPath.";
        if (SparseThresholdBytes > long.MaxValue)
            return $"-SparseThresholdBytes {SparseThresholdBytes} is too large.";
        if (ClusterSizeBytes > int.MaxValue)
            return ClusterSizeProblem(ClusterSizeBytes);
        return null;
    }

    private void Convert(string source, string destination)
    {
        if (HostFileInfo.SameFile(source, destination))
        {
            WriteError(VDiskErrors.DestinationIsSource(source, destination));
            return;
        }
        if (!ShouldProcess(destination, Describe(source, destination))) return;
        var options = BuildOptions();
        string status = $"Converting {System.IO.Path.GetFileName(source)} to {System.IO.Path.GetFileName(destination)}";
        var written = Attempt(source, () => RunWithProgress("Convert-VDisk", status, 0, (meter, cancel) => ConvertImage.Run(source, destination, options, meter, cancel)));
        if (written is null) return;
        foreach (string warning in written.Warnings) WriteWarning($"{destination}: {warning}");
        _written.Add(destination);
        // The output is described in the format it was written in, never probed again (its guest data may look like anything).
        if (PassThru && Attempt(destination, () => RunCancellable(cancel => InspectImage.Run(destination, options.DestinationFormat, cancel))) is { } info)
            WriteObject(VDiskInfo.From(info));
    }

    private ConvertOptions BuildOptions() => new()
    {
        SourceFormat = IsBound(nameof(SourceFormat)) ? SourceFormat.ToEngine() : null,
        DestinationFormat = _format.ToEngine(),
        Subformat = IsBound(nameof(Subformat)) ? Subformat.ToEngine() : ImageSubformat.Default,
        Compress = Compress,
        CompressionType = CompressionType,
        ClusterSize = IsBound(nameof(ClusterSizeBytes)) ? (int)ClusterSizeBytes : null,
        Preallocation = Preallocation,
        BackingPath = _backingFull,
        BackingPathRelative = _backingFull != null && IsTypedRelative(BackingPath),
        BackingFormat = IsBound(nameof(BackingFormat)) ? BackingFormat.ToEngine() : null,
        SparseThreshold = (long)SparseThresholdBytes,
        Snapshot = IsBound(nameof(Snapshot)) ? Snapshot : null,
        ThrottleLimit = ThrottleLimit,
        CacheMode = CacheMode,
        SourceCacheMode = SourceCacheMode,
        Overwrite = Force,
        Encryption = _encryption,
        Passphrase = _passphrase,
    };

    private string Describe(string source, string destination)
    {
        string verb = File.Exists(destination) && Force ? "Overwrite with" : "Create";
        string variant = IsBound(nameof(Subformat)) ? $" ({Subformat})" : string.Empty;
        string compressed = Compress ? " compressed" : string.Empty;
        string backing = IsBound(nameof(BackingPath)) ? $", backed by '{BackingPath}'" : string.Empty;
        string snapshot = IsBound(nameof(Snapshot)) ? $" snapshot '{Snapshot}' of" : string.Empty;
        return $"{verb}{compressed} {_format}{variant} image converted from{snapshot} '{source}'{backing}";
    }
}
