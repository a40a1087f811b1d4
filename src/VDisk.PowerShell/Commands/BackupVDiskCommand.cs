// Backup-VDisk: backs up images into backup sets (issue 11): the first run writes a compressed full backup, later
// runs an incremental point with only what changed. -Destination names the set, or a folder that holds one set per
// image (named after it); a script block computes it per piped image. -Domain backs up the disks of libvirt domains:
// a running one hot (external snapshot, backup of each now read-only image, commit back: HotBackup), a shut-off one
// offline from the images it names; one set per disk, DESTINATION/DOMAIN-TARGET, unless -Destination already is a
// set and one disk is backed up.
using System.Management.Automation;
using System.Security;
using VDisk.Engine.Backup;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Libvirt;

namespace VDisk.PowerShell.Commands;

/// <summary>Backs up disk images into backup sets.</summary>
[Cmdlet(VerbsData.Backup, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(VDiskBackupPoint))]
public sealed class BackupVDiskCommand : ImageInputCmdletBase
{
    private const string DomainSet = "Domain";

    /// <summary>
    /// libvirt domains whose disks to back up (wildcards match the defined and running domains): a running domain
    /// through an external snapshot and a commit back, a shut-off one from its images.
    /// </summary>
    [Parameter(Mandatory = true, ParameterSetName = DomainSet)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Domain { get; set; } = Array.Empty<string>();

    /// <summary>With -Domain: only these disks (vda, sdb); by default every writable file-backed disk.</summary>
    [Parameter(ParameterSetName = DomainSet)]
    [ValidateNotNullOrEmpty]
    public string[]? Target { get; set; }

    /// <summary>The libvirt connection (default: $env:LIBVIRT_DEFAULT_URI, else qemu:///system).</summary>
    [Parameter(ParameterSetName = DomainSet)]
    public string? Uri { get; set; }

    /// <summary>
    /// The backup set's folder (created with any missing parents), or an existing folder that is not a set,
    /// which then holds one set per image, named after the image. A script block gets each piped image as $_.
    /// </summary>
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Destination { get; set; } = string.Empty;

    /// <summary>Writes a full backup, starting a new chain, even when the set has points.</summary>
    [Parameter]
    public SwitchParameter Full { get; set; }

    /// <summary>Compression of the point's clusters: Zlib (default; every qemu-img reads it) or Zstd (faster).</summary>
    [Parameter]
    public CompressionType CompressionType { get; set; }

    /// <summary>Stores the point's clusters uncompressed (faster, larger).</summary>
    [Parameter]
    public SwitchParameter NoCompression { get; set; }

    /// <summary>Format of the source image; by default it is probed.</summary>
    [Parameter(ParameterSetName = PathSet)]
    [Parameter(ParameterSetName = LiteralPathSet)]
    public VDiskFormat SourceFormat { get; set; }

    /// <summary>Reads an image a running VM has open for writing (the backup may then be inconsistent).</summary>
    [Parameter(ParameterSetName = PathSet)]
    [Parameter(ParameterSetName = LiteralPathSet)]
    public SwitchParameter Force { get; set; }

    /// <summary>Waits for another backup or prune of the same set instead of failing.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>Worker threads reading, hashing and compressing (default: the number of processors).</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int ThrottleLimit { get; set; } = Environment.ProcessorCount;

    /// <summary>Passphrases of encrypted source images (SecureStrings or PSCredentials).</summary>
    [Parameter(ParameterSetName = PathSet)]
    [Parameter(ParameterSetName = LiteralPathSet)]
    [PassphraseTransformation]
    public SecureString[]? SourcePassphrase { get; set; }

    /// <summary>Files whose first lines are passphrases of encrypted source images.</summary>
    [Parameter(ParameterSetName = PathSet)]
    [Parameter(ParameterSetName = LiteralPathSet)]
    public string[]? SourcePassphraseFile { get; set; }

    /// <summary>Starts an encrypted set: every point a LUKS-encrypted qcow2 image (uncompressed, as QEMU requires), block hashes keyed.</summary>
    [Parameter]
    public SwitchParameter Encrypt { get; set; }

    /// <summary>The set's passphrase: for a new set with -Encrypt, and for every later backup into an encrypted set.</summary>
    [Parameter]
    [PassphraseTransformation]
    public SecureString? Passphrase { get; set; }

    /// <summary>A file whose first line is the set's passphrase (like QEMU's secret,file=).</summary>
    [Parameter]
    public string? PassphraseFile { get; set; }

    /// <summary>The points' LUKS cipher as cipher-keybits-mode-ivgen (default aes-256-xts-plain64), for a new encrypted set.</summary>
    [Parameter]
    public string Cipher { get; set; } = EncryptionInput.DefaultCipher;

    /// <summary>The hash of the points' key derivation: sha1, sha256 (default), sha384 or sha512, for a new encrypted set.</summary>
    [Parameter]
    public string HashAlgorithm { get; set; } = EncryptionInput.DefaultHash;

    /// <summary>How long deriving each point's key takes, in milliseconds (default 2000, as qemu-img), for a new encrypted set.</summary>
    [Parameter]
    [ValidateRange(1, 600000)]
    public int IterTimeMilliseconds { get; set; } = EncryptionInput.DefaultIterTimeMilliseconds;

    private LuksFormatOptions? _encryption;
    private Passphrase? _setPassphrase;

    /// <summary>Reads the passphrases and the encryption settings once, before any image.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        InputPassphrases = ReadPassphrases(SourcePassphrase, SourcePassphraseFile);
        if (!Encrypt && new[] { nameof(Cipher), nameof(HashAlgorithm), nameof(IterTimeMilliseconds) }.FirstOrDefault(IsBound) is { } lone)
            ThrowTerminatingError(VDiskErrors.InvalidArgument($"-{lone} applies only with -Encrypt (a new encrypted set).", null));
        if (Encrypt)
        {
            try { _encryption = EncryptionInput.Options(Cipher, HashAlgorithm, IterTimeMilliseconds); }
            catch (VDiskException e) { ThrowTerminatingError(VDiskErrors.FromException(e, MyInvocation.MyCommand.Name)!); }
            _setPassphrase = NewPassphrase(Passphrase, PassphraseFile);
        }
        else if (Passphrase != null || PassphraseFile != null)
        {
            _setPassphrase = NewPassphrase(Passphrase, PassphraseFile);
        }
    }

    /// <summary>Backs up one image into its set and writes the new point.</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (ResolveLiteralPath(Destination) is not { } destination) return;
        string setFolder = Directory.Exists(destination) && !BackupSet.IsSet(destination)
            ? System.IO.Path.Combine(destination, System.IO.Path.GetFileNameWithoutExtension(fullPath))
            : destination;
        string kind = Full ? "a full backup" : BackupSet.IsSet(setFolder) ? "an incremental backup" : "a full backup (new set)";
        if (!ShouldProcess(setFolder, $"Write {kind} of '{fullPath}'")) return;
        var options = new BackupOptions
        {
            Full = Full, Compress = !NoCompression, CompressionType = CompressionType, Force = Force, Wait = Wait, ThrottleLimit = ThrottleLimit,
            SourceFormat = IsBound(nameof(SourceFormat)) ? SourceFormat.ToEngine() : null, Encryption = _encryption, Passphrase = _setPassphrase,
        };
        string status = $"Backing up {System.IO.Path.GetFileName(fullPath)} to {setFolder}";
        var result = Attempt(fullPath, () => RunWithProgress("Backup-VDisk", status, 0, (meter, cancel) =>
            BackupImage.Run(fullPath, setFolder, options, new BackupProgressAdapter(meter), cancel)));
        if (result is null) return;
        foreach (string warning in result.Warnings) WriteWarning($"{setFolder}: {warning}");
        WriteObject(VDiskBackupPoint.From(result.SetPath, result.Point));
    }

    /// <summary>Backs up images (-Path, -LiteralPath) or the disks of domains (-Domain).</summary>
    protected override void ProcessRecord()
    {
        if (ParameterSetName != DomainSet)
        {
            base.ProcessRecord();
            return;
        }
        if (ResolveLiteralPath(Destination) is not { } destination) return;
        var virsh = new Virsh(Uri);
        foreach (string domainName in ExpandDomainNames(virsh, Domain).ToList()) BackUpDomain(virsh, domainName, destination);
    }

    private void BackUpDomain(Virsh virsh, string name, string destination)
    {
        if (Attempt(name, () => HotBackup.Plan(virsh, name, destination, Target)) is not { } plan) return;
        foreach (string skipped in plan.Skipped) WriteWarning(skipped);
        if (plan.Disks.Count == 0)
        {
            WriteWarning($"Domain '{name}' has no disk to back up.");
            return;
        }
        string Kind(HotBackupDisk d) => Full ? "full" : BackupSet.IsSet(d.SetFolder) ? "incremental" : "full, new set";
        string disks = string.Join("; ", plan.Disks.Select(d => $"{d.Target}: {d.ImagePath} into {d.SetFolder} ({Kind(d)})"));
        string action = plan.Live
            ? $"Hot backup ({plan.State}): an external snapshot puts {string.Join(", ", plan.Disks.Select(d => $"{d.Target} on {d.OverlayPath}"))}; " +
              $"back up {disks}; then commit each overlay back (virsh blockcommit --active --shallow --pivot) and remove it"
            : $"Offline backup (shut off): {disks}";
        if (!ShouldProcess($"domain '{name}' ({virsh.Uri})", action)) return;
        var options = new BackupOptions
        {
            Full = Full, Compress = !NoCompression, CompressionType = CompressionType, Wait = Wait, ThrottleLimit = ThrottleLimit,
            Encryption = _encryption, Passphrase = _setPassphrase,
        };
        string status = $"Backing up {string.Join(", ", plan.Disks.Select(d => d.Target))} of domain {name}";
        var result = Attempt(name, () =>
        {
            try
            {
                return RunWithProgress("Backup-VDisk", status, 0, (meter, cancel) =>
                    HotBackup.Run(virsh, plan, options, new BackupProgressAdapter(meter), cancel));
            }
            catch (VDiskException e) when (Stopping)
            {
                Host.UI.WriteErrorLine(e.Message); // a stopping pipeline writes no error records, and this one says what to do
                throw;
            }
        });
        if (result is null) return;
        foreach (var disk in result.Disks)
        {
            if (disk.Result is { } backup)
            {
                foreach (string warning in backup.Warnings) WriteWarning($"{backup.SetPath}: {warning}");
                WriteObject(VDiskBackupPoint.From(backup.SetPath, backup.Point));
            }
            else if (disk.Error is { } error)
            {
                WriteError(VDiskErrors.FromException(error, disk.Disk.ImagePath) ?? VDiskErrors.Internal(error, disk.Disk.ImagePath));
            }
        }
        foreach (string warning in result.Warnings) WriteWarning(warning);
        if (result.CommitError is { } commit) WriteError(VDiskErrors.FromException(commit, name)!);
    }

    private sealed class BackupProgressAdapter(ProgressMeter meter) : IProgress<BackupProgress>
    {
        public void Report(BackupProgress value)
        {
            meter.Report(new VDisk.Engine.Operations.OperationProgress(value.BytesDone, value.BytesTotal));
            meter.Detail = $"read {HumanSize.Format(value.BytesRead)}, changed {HumanSize.Format(value.BytesChanged)}, written {HumanSize.Format(value.BytesWritten)}";
        }
    }
}
