// New-VDisk: creates a raw, qcow2, VMDK or VDI image (qemu-img create), or an overlay on a backing image.
using System.Management.Automation;
using System.Security;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Creates a new disk image and writes its VDiskInfo.</summary>
[Cmdlet(VerbsCommon.New, "VDisk", DefaultParameterSetName = SizeSet, SupportsShouldProcess = true)]
[OutputType(typeof(VDiskInfo))]
public sealed class NewVDiskCommand : VDiskCmdletBase
{
    private const string SizeSet = "Size";
    private const string BackingSet = "Backing";

    /// <summary>The new image file, relative to the current PowerShell location. Wildcards are not expanded.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = string.Empty;

    /// <summary>Virtual size in bytes (20GB works as typed). Optional for an overlay: the backing image's size.</summary>
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = SizeSet)]
    [Parameter(Position = 1, ParameterSetName = BackingSet)]
    [Alias("Size")]
    public ulong SizeBytes { get; set; }

    /// <summary>Format to write; by default from the extension (.raw and .img raw, .vmdk vmdk, .vdi vdi, anything else qcow2).</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>Format variant: a VMDK subformat, or Dynamic / Static for VDI (default MonolithicSparse, Dynamic).</summary>
    [Parameter]
    public VDiskSubformat Subformat { get; set; }

    /// <summary>qcow2 cluster size in bytes: a power of two from 512 to 2 MiB (default 64 KiB).</summary>
    [Parameter]
    public uint ClusterSizeBytes { get; set; }

    /// <summary>How much host space to reserve up front (default Off: sparse).</summary>
    [Parameter]
    public Preallocation Preallocation { get; set; }

    /// <summary>Image to use as the backing file of a new overlay (qcow2, or a sparse VMDK).</summary>
    [Parameter(Mandatory = true, ParameterSetName = BackingSet)]
    [ValidateNotNullOrEmpty]
    public string BackingPath { get; set; } = string.Empty;

    /// <summary>Format of the backing image; by default it is probed and the result recorded.</summary>
    [Parameter(ParameterSetName = BackingSet)]
    public VDiskFormat BackingFormat { get; set; }

    /// <summary>Enables lazy refcounts (qcow2 compat 1.1).</summary>
    [Parameter]
    public SwitchParameter LazyRefcounts { get; set; }

    /// <summary>qcow2 version: '0.10' (version 2) or '1.1' (version 3, the default).</summary>
    [Parameter]
    [ValidateSet("0.10", "1.1")]
    public string Compat { get; set; } = "1.1";

    /// <summary>Compression recorded for compressed clusters (qcow2 compat 1.1; default Zlib).</summary>
    [Parameter]
    public CompressionType CompressionType { get; set; }

    /// <summary>qcow2 refcount entry width in bits (default 16; other widths need compat 1.1).</summary>
    [Parameter]
    [ValidateSet("1", "2", "4", "8", "16", "32", "64")]
    public int RefcountBits { get; set; } = 16;

    /// <summary>Overwrites an existing file.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Encrypts the image with LUKS (qcow2 compat 1.1), as qemu-img's encrypt.format=luks.</summary>
    [Parameter]
    public SwitchParameter Encrypt { get; set; }

    /// <summary>The new image's passphrase: a SecureString, or a PSCredential (its password).</summary>
    [Parameter]
    [PassphraseTransformation]
    public SecureString? Passphrase { get; set; }

    /// <summary>A file whose first line is the new image's passphrase (like QEMU's secret,file=).</summary>
    [Parameter]
    public string? PassphraseFile { get; set; }

    /// <summary>The LUKS cipher as cipher-keybits-mode-ivgen (default aes-256-xts-plain64, qemu-img's default).</summary>
    [Parameter]
    public string Cipher { get; set; } = EncryptionInput.DefaultCipher;

    /// <summary>The hash of the key derivation (PBKDF2) and the anti-forensic splitter: sha1, sha256 (default), sha384 or sha512.</summary>
    [Parameter]
    public string HashAlgorithm { get; set; } = EncryptionInput.DefaultHash;

    /// <summary>How long deriving the key from the passphrase should take, in milliseconds (default 2000, as qemu-img).</summary>
    [Parameter]
    [ValidateRange(1, 600000)]
    public int IterTimeMilliseconds { get; set; } = EncryptionInput.DefaultIterTimeMilliseconds;

    private static readonly string[] Qcow2OnlyParameters =
        { nameof(ClusterSizeBytes), nameof(LazyRefcounts), nameof(Compat), nameof(CompressionType), nameof(RefcountBits) };

    /// <summary>Checks the options, asks ShouldProcess, creates the image and writes its VDiskInfo.</summary>
    protected override void ProcessRecord()
    {
        if (ResolveLiteralPath(Path) is not { } target) return;
        var format = IsBound(nameof(Format)) ? Format : VDiskFormatConversion.FromExtension(target);
        if (OptionProblem(format) is { } problem)
        {
            WriteError(VDiskErrors.InvalidArgument(problem, target));
            return;
        }
        string? backingFull = null;
        if (IsBound(nameof(BackingPath)) && (backingFull = ResolveLiteralPath(BackingPath)) is null) return;

        var options = BuildOptions(format, backingFull);
        if (Encrypt)
        {
            if (EncryptionProblem(format) is { } encryptionProblem)
            {
                WriteError(VDiskErrors.InvalidArgument(encryptionProblem, target));
                return;
            }
            var encryption = Attempt(target, () => EncryptionInput.Options(Cipher, HashAlgorithm, IterTimeMilliseconds));
            if (encryption is null) return;
            options = options with { Encryption = encryption, Passphrase = NewPassphrase(Passphrase, PassphraseFile) };
        }
        if (!ShouldProcess(target, Describe(target, format))) return;
        var created = Attempt(target, () => RunWithProgress("New-VDisk", $"Creating {target}", options.Size ?? 0, (meter, cancel) =>
        {
            var result = CreateImage.Run(target, options, Force, meter, cancel);
            return Tuple.Create(result, InspectImage.Run(target, options.Format, cancel));
        }));
        if (created is null) return;
        foreach (string warning in created.Item1.Warnings) WriteWarning($"{target}: {warning}");
        WriteObject(VDiskInfo.From(created.Item2));
    }

    private string? EncryptionProblem(VDiskFormat format) =>
        format != VDiskFormat.Qcow2 ? $"-Encrypt applies to qcow2 images only, not {format}." : null;

    private string? OptionProblem(VDiskFormat format)
    {
        if (!Encrypt && EncryptionInput.Parameters.FirstOrDefault(IsBound) is { } lone)
            return $"-{lone} applies only with -Encrypt.";
        if (SizeBytes > CreateImage.MaxSize) return $"-SizeBytes {SizeBytes} is too large: the largest disk is {CreateImage.MaxSize} bytes (8 EiB less 512 bytes).";
        var qcow2Only = Qcow2OnlyParameters.Where(IsBound).ToArray();
        if (format != VDiskFormat.Qcow2 && qcow2Only.Length > 0)
            return $"-{string.Join(", -", qcow2Only)} apply to qcow2 images only, not {format}.";
        if (ClusterSizeBytes > int.MaxValue) return ClusterSizeProblem(ClusterSizeBytes);
        if (IsBound(nameof(Subformat))) return Subformat.MismatchWith(format);
        return null;
    }

    private CreateOptions BuildOptions(VDiskFormat format, string? backingFull) => new()
    {
        Format = format.ToEngine(),
        Subformat = IsBound(nameof(Subformat)) ? Subformat.ToEngine() : ImageSubformat.Default,
        Size = IsBound(nameof(SizeBytes)) ? (long)SizeBytes : null,
        ClusterSize = IsBound(nameof(ClusterSizeBytes)) ? (int)ClusterSizeBytes : new CreateOptions().ClusterSize,
        Preallocation = Preallocation,
        BackingPath = backingFull,
        BackingPathRelative = backingFull != null && IsTypedRelative(BackingPath),
        BackingFormat = IsBound(nameof(BackingFormat)) ? BackingFormat.ToEngine() : null,
        LazyRefcounts = LazyRefcounts,
        Compat = Compat,
        CompressionType = CompressionType,
        RefcountBits = RefcountBits,
    };

    private string Describe(string target, VDiskFormat format)
    {
        string size = IsBound(nameof(SizeBytes)) ? HumanSize.Format((long)SizeBytes) : "the backing image's size";
        string verb = File.Exists(target) && Force ? "Overwrite with" : "Create";
        string backing = IsBound(nameof(BackingPath)) ? $" backed by '{BackingPath}'" : string.Empty;
        string variant = IsBound(nameof(Subformat)) ? $" ({Subformat})" : string.Empty;
        return $"{verb} {format}{variant} image of {size}{backing}";
    }
}
