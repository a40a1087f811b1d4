// Set-VDiskCache: sets the cache mode (and I/O mode) of VM disks (issue 10; libvirt formatdomain "Hard drives, floppy
// disks, CDROMs", driver cache/io). Disks piped from Get-VDiskAttachment are gathered per domain or file, so each gets
// one edit: the XML changes only in the driver attributes set, the QEMU driver's rules are checked first (a refused
// edit changes nothing), -WhatIf shows the line diff, a file keeps a backup unless -NoBackup, and a domain is
// defined through virsh; a running domain applies it at its next start, or now with -Restart.
using System.Management.Automation;
using VDisk.Engine.Libvirt;
using VDisk.Engine.Storage;

namespace VDisk.PowerShell.Commands;

/// <summary>Sets the cache mode and I/O mode of disks of libvirt domains or domain XML files.</summary>
[Cmdlet(VerbsCommon.Set, "VDiskCache", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(VDiskAttachment))]
public sealed class SetVDiskCacheCommand : VDiskCmdletBase
{
    /// <summary>The domain (libvirt, through virsh).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? Domain { get; set; }

    /// <summary>A domain XML file to edit instead of a libvirt domain.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? DomainXmlPath { get; set; }

    /// <summary>The disks' target names (vda, sda ...).</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    public string[] Target { get; set; } = Array.Empty<string>();

    /// <summary>The cache mode to set.</summary>
    [Parameter]
    public CacheMode CacheMode { get; set; }

    /// <summary>The I/O mode to set (Native needs CacheMode None or DirectSync).</summary>
    [Parameter]
    public DiskIoMode IoMode { get; set; }

    /// <summary>The libvirt connection (default: $env:LIBVIRT_DEFAULT_URI, else qemu:///system).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? Uri { get; set; }

    /// <summary>With -DomainXmlPath: no backup of the original file.</summary>
    [Parameter]
    public SwitchParameter NoBackup { get; set; }

    /// <summary>Restarts a running domain (ACPI shutdown, then start) so the change applies now.</summary>
    [Parameter]
    public SwitchParameter Restart { get; set; }

    /// <summary>With -Restart: powers the domain off (virsh destroy) when it has not shut down within -TimeoutSec.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>With -Restart: how long to wait for the guest to shut down (default 120 s; 0 with -Force powers off at once).</summary>
    [Parameter]
    [ValidateRange(0, 86400)]
    public int TimeoutSec { get; set; } = 120;

    /// <summary>Writes the changed attachments.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private readonly List<(string Key, bool IsFile, string Name, string? Uri, List<string> Targets)> _work = new();

    /// <summary>Checks that there is something to set.</summary>
    protected override void BeginProcessing()
    {
        if (!IsBound(nameof(CacheMode)) && !IsBound(nameof(IoMode)))
            ThrowTerminatingError(VDiskErrors.InvalidArgument("Give -CacheMode, -IoMode or both.", null));
        if (IsBound(nameof(Domain)) && IsBound(nameof(DomainXmlPath)))
            ThrowTerminatingError(VDiskErrors.InvalidArgument("Give -Domain or -DomainXmlPath, not both.", null));
    }

    /// <summary>Gathers the targets per domain or file; the edits are made once all are known.</summary>
    protected override void ProcessRecord()
    {
        bool isFile = !string.IsNullOrEmpty(DomainXmlPath);
        string? name = isFile ? ResolveLiteralPath(DomainXmlPath!) : Domain;
        if (string.IsNullOrEmpty(name))
        {
            if (!isFile) WriteError(VDiskErrors.InvalidArgument("Give -Domain or -DomainXmlPath (or pipe Get-VDiskAttachment output).", null));
            return;
        }
        string? uri = isFile ? null : new Virsh(Uri).Uri;
        string key = isFile ? "file:" + name : $"{uri}|{name}";
        int index = _work.FindIndex(w => w.Key == key);
        if (index < 0)
        {
            _work.Add((key, isFile, name, uri, new List<string>()));
            index = _work.Count - 1;
        }
        foreach (string target in Target)
            if (!_work[index].Targets.Contains(target)) _work[index].Targets.Add(target);
    }

    /// <summary>Edits each domain or file once.</summary>
    protected override void EndProcessing()
    {
        foreach (var work in _work) Apply(work.IsFile, work.Name, work.Uri, work.Targets);
    }

    private void Apply(bool isFile, string name, string? uri, List<string> targets)
    {
        var virsh = new Virsh(uri);
        var original = Attempt(name, () => isFile ? DomainFiles.Load(name) : DomainXml.Parse(virsh.DumpXml(name), $"domain {name}"));
        if (original is null) return;
        CacheMode? cache = IsBound(nameof(CacheMode)) ? CacheMode : null;
        DiskIoMode? io = IsBound(nameof(IoMode)) ? IoMode : null;
        var edited = original;
        var changed = new List<string>();
        foreach (string target in targets)
        {
            if (Attempt(name, () => edited.WithCache(target, cache, io)) is not { } next) continue;
            edited = next;
            changed.Add(target);
        }
        if (changed.Count == 0 || Attempt(name, () => { DomainRules.Ensure(edited, changed); return edited; }) is null) return;

        string what = string.Join(" ", new[] { cache is { } c ? $"cache='{DiskAttachment.CacheName(c)}'" : null, io is { } i ? $"io='{DiskAttachment.IoName(i)}'" : null }.Where(s => s is not null));
        string where = isFile ? $"domain XML file {name}" : $"domain '{name}' ({virsh.Uri})";
        var diff = LineDiff.Compare(original.Text, edited.Text);
        string description = $"Set {what} on disk {string.Join(", ", changed)} of {where}" +
            (diff.Count == 0 ? " (already set: nothing changes)" : ":\n" + string.Join("\n", diff)) + (Restart && !isFile ? "\nand restart it if running" : "");
        if (!ShouldProcess(description, $"Set {what} on disk {string.Join(", ", changed)} of {where}?", "Set-VDiskCache")) return;

        if (diff.Count > 0)
        {
            if (isFile)
            {
                if (Attempt(name, () => Tuple.Create(DomainFiles.Save(name, edited, !NoBackup))) is not { } saved) return;
                if (saved.Item1 is { } backup) WriteVerbose($"The original of {name} is kept as {backup}.");
            }
            else if (Attempt(name, () => { virsh.Define(edited.Text); return edited; }) is null) return;
        }
        if (!isFile && Attempt(name, () => (object)virsh.IsActive(name)) is true)
        {
            if (Restart)
            {
                if (Attempt(name, () => RunCancellable(cancel => { virsh.Restart(name, TimeSpan.FromSeconds(TimeoutSec), Force, cancel); return edited; })) is null) return;
            }
            else if (diff.Count > 0)
            {
                WriteWarning($"Domain '{name}' is running: the new settings are defined and apply at its next start (or now with -Restart).");
            }
        }
        if (PassThru)
            foreach (string target in changed) WriteObject(VDiskAttachment.From(edited.Disk(target), isFile ? name : null, isFile ? null : virsh.Uri));
    }
}
