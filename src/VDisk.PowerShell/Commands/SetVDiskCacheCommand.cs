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
public sealed class SetVDiskCacheCommand : DomainEditCmdletBase
{
    /// <summary>The disks' target names (vda, sda ...).</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    public string[] Target { get; set; } = Array.Empty<string>();

    /// <summary>The cache mode to set.</summary>
    [Parameter]
    public CacheMode CacheMode { get; set; }

    /// <summary>The I/O mode to set (Native needs CacheMode None or DirectSync).</summary>
    [Parameter]
    public DiskIoMode IoMode { get; set; }

    private readonly List<(string Key, bool IsFile, string Name, string? Uri, List<string> Targets)> _work = new();

    /// <summary>Checks that there is something to set.</summary>
    protected override void BeginProcessing()
    {
        if (!IsBound(nameof(CacheMode)) && !IsBound(nameof(IoMode)))
            ThrowTerminatingError(VDiskErrors.InvalidArgument("Give -CacheMode, -IoMode or both.", null));
        base.BeginProcessing();
    }

    /// <summary>Gathers the targets per domain or file; the edits are made once all are known.</summary>
    protected override void ProcessRecord()
    {
        if (NamedDomain() is not var (isFile, name)) return;
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
        foreach (var work in _work) Edit(work.IsFile, work.Name, work.Uri, work.Targets);
    }

    private void Edit(bool isFile, string name, string? uri, List<string> targets)
    {
        var virsh = new Virsh(uri);
        if (Load(isFile, name, virsh) is not { } original) return;
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
        string settings = string.Join(" ", new[] { cache is { } c ? $"cache='{DiskAttachment.CacheName(c)}'" : null, io is { } i ? $"io='{DiskAttachment.IoName(i)}'" : null }.Where(s => s is not null));
        if (!Apply(isFile, name, virsh, original, edited, $"Set {settings} on disk {string.Join(", ", changed)}", "the new settings are")) return;
        if (PassThru)
            foreach (string target in changed) WriteObject(VDiskAttachment.From(edited.Disk(target), isFile ? name : null, isFile ? null : virsh.Uri));
    }
}
